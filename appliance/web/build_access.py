"""Who may open a private development build behind the proxy.

A signed-in user's browser holds, besides the UI's own session cookie (for the UI's name
only), an access cookie set for the base domain and so sent to every build's name. Caddy
asks the daemon (/_proxy/auth) before each request to a development build; the daemon
reads that cookie: a member of the project (or an appliance admin) whose sign-in is still
current goes on, anyone else is sent to sign in. Caddy takes the cookie out of the request
before it reaches the build: the build's code never sees it.

The cookie holds the user's id and session generation, signed with the appliance's
secret key: signing out, or a new password, voids it like the session.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

from appliance.jobs.proxy_config import ACCESS_COOKIE
from appliance.store import users as store_users

SALT = "appliance.build-access"


def _signer(cfg) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(cfg.server.secret_key, salt=SALT)


def token_for(cfg, user: dict) -> str:
    return _signer(cfg).dumps([user["id"], user["session_generation"]])


def user_from(cfg, conn, token: str | None, max_age: float) -> dict | None:
    """The user an access cookie names, while their sign-in is current; else None."""
    if not token:
        return None
    try:
        user_id, generation = _signer(cfg).loads(token, max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        return None
    return store_users.session_user(conn, user_id, generation)


def issue(cfg, response, user: dict, max_age: float) -> None:
    """Set the access cookie for the base domain (nothing without a proxy)."""
    if cfg.proxy.base_domain:
        response.set_cookie(ACCESS_COOKIE, token_for(cfg, user), max_age=int(max_age),
                            domain=cfg.proxy.base_domain, secure=True, httponly=True,
                            samesite="Lax")


def clear(cfg, response) -> None:
    if cfg.proxy.base_domain:
        response.delete_cookie(ACCESS_COOKIE, domain=cfg.proxy.base_domain, secure=True,
                               httponly=True, samesite="Lax")


def refresh(cfg, request, response, user: dict | None, max_age: float) -> None:
    """After a UI page: a signed-in user whose access cookie is missing, stale or names
    someone else (a build may set cookies for the base domain) gets theirs again."""
    if not cfg.proxy.base_domain or user is None:
        return
    try:
        held = _signer(cfg).loads(request.cookies.get(ACCESS_COOKIE, ""), max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        held = None
    if held != [user["id"], user["session_generation"]]:
        issue(cfg, response, user, max_age)
