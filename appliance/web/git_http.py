"""Git over HTTP(S): the smart protocol through `git http-backend`, token auth.

`/git/<project>.git/...` is served by git's own CGI program, fed the request body and
streamed back. Authentication is HTTP basic with a user name and a personal access token
(made on the user's account page): fetching needs its git_read scope, pushing git_write.
An unknown, expired or revoked token, or one of a disabled user, gets the same 401; a
token without the scope a 403. git prints either message to the user. The repository's
hooks (written by the appliance, see runtime.git.install_hooks) call back into
`/git/-/hook/<name>` with a ticket made for this one push, and print our answer to the
pusher.
"""

from __future__ import annotations

import base64
import logging
import secrets
import shutil
import subprocess
import threading
import time

from flask import Blueprint, Response, request, url_for

from appliance import gitserve
from appliance.errors import GitError, NotFound, PermissionDenied, UserError
from appliance.runtime import git
from appliance.store import users as users_store
from appliance.web import common, guard
from appliance.web.auth import client_address

log = logging.getLogger(__name__)
blueprint = Blueprint("git", __name__)

# A push ticket outlives the longest push we expect (a large first push on a slow line).
TICKET_SECONDS = 3600
SERVICES = gitserve.SERVICES
CHUNK = 64 * 1024
_tickets: dict[str, dict] = {}
_tickets_lock = threading.Lock()


def _plain(text: str, status: int, headers: dict | None = None) -> Response:
    return Response(text if text.endswith("\n") else text + "\n", status=status,
                    mimetype="text/plain", headers=headers or {})


def _authenticate(scope: str):
    """The user behind the basic auth header, or None; PermissionDenied when their token
    lacks `scope`."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        name, _, token = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    with common.db().transaction() as conn:
        return users_store.user_by_token(conn, name, token, scope)


def _challenge(message: str) -> Response:
    return _plain(message, 401, {"WWW-Authenticate": 'Basic realm="appliance git"'})


@blueprint.route("/git/<name>.git/<path:rest>", methods=["GET", "POST"])
@guard.self_authenticated
def serve(name: str, rest: str):
    service = request.args.get("service") if rest == "info/refs" else rest
    if service not in SERVICES:
        return _plain("only the smart HTTP protocol is served", 403)
    scope = "git_write" if service == "git-receive-pack" else "git_read"
    try:
        user = _authenticate(scope)
    except PermissionDenied as exc:
        return _plain(f"{exc}: make a token with that scope on your account page, "
                      f"{_account_url()}", 403)
    if user is None:
        return _challenge("authentication failed: use your user name and a personal access "
                          "token as the password (unknown, expired and revoked tokens are "
                          f"refused); make one on your account page, {_account_url()}")
    with common.db().transaction() as conn:
        try:
            project, repo = gitserve.repository(conn, common.config(), user, name)
        except NotFound as exc:
            return _plain(str(exc), 404)
    env = _cgi_env(project, user, rest)
    if service == "git-receive-pack" and request.method == "POST":
        try:
            allowed = gitserve.push_allowance(common.config(), repo, request.content_length)
        except GitError as exc:
            log.info("push to %s by %s refused: %s", project["name"], user["name"], exc)
            return _refuse_push(str(exc))
        # git itself stops a pack stream past this, should the length be unknown
        env.update(gitserve.max_input_env(allowed))
    if service == "git-receive-pack":
        env["APPLIANCE_HOOK_TICKET"] = _new_ticket(project, user, client_address())
        env["APPLIANCE_HOOK_URL"] = _hook_url()
    return _run_backend(env)


def _account_url() -> str:
    return common.config().server.public_url.rstrip("/") + url_for("account.index")


def _refuse_push(message: str) -> Response:
    """Answer a push as receive-pack would when refusing it, without running git: nothing
    of it reaches the repository, and the pusher sees the message as `remote:` lines."""
    refs, caps = git.read_push_commands(request.stream)
    return Response(git.refusal(refs, caps, message), status=200,
                    mimetype="application/x-git-receive-pack-result",
                    headers={"Cache-Control": "no-cache"})


def _cgi_env(project: dict, user: dict, rest: str) -> dict:
    cfg = common.config()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "GIT_PROJECT_ROOT": str(cfg.paths.repos),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{project['name']}.git/{rest}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string.decode(),
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "REMOTE_USER": user["name"],
        "REMOTE_ADDR": request.remote_addr or "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cfg.paths.data_dir),
    }
    for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                        ("Git-Protocol", "GIT_PROTOCOL"), ("Content-Length", "CONTENT_LENGTH")):
        if request.headers.get(header):
            env[var] = request.headers[header]
    return env


def _run_backend(env: dict) -> Response:
    proc = subprocess.Popen([shutil.which("git") or "git", "http-backend"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    feeder = threading.Thread(target=_feed, args=(request.stream, proc.stdin), daemon=True)
    feeder.start()
    status, headers = _read_cgi_headers(proc.stdout)

    def body():
        try:
            while chunk := proc.stdout.read1(CHUNK):
                yield chunk
        finally:
            feeder.join(timeout=5)
            proc.stdout.close()
            errors = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
            if proc.wait() != 0 or errors:
                log.warning("git http-backend exited %s: %s", proc.returncode, errors[-500:])

    return Response(body(), status=status, headers=headers, direct_passthrough=True)


def _feed(source, sink) -> None:
    try:
        while chunk := source.read(CHUNK):
            sink.write(chunk)
    except (BrokenPipeError, OSError) as exc:
        log.info("git request body not fully passed on: %s", exc)
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass


def _read_cgi_headers(stream) -> tuple[int, list[tuple[str, str]]]:
    status, headers = 200, []
    while True:
        line = stream.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        key, _, value = line.decode("latin-1").partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((key.strip(), value.strip()))
    return status, headers


def _new_ticket(project: dict, user: dict, address: str) -> str:
    ticket = secrets.token_urlsafe(32)
    now = time.monotonic()
    with _tickets_lock:
        for key in [k for k, v in _tickets.items() if v["expires"] < now]:
            del _tickets[key]
        _tickets[ticket] = {"project_id": project["id"], "user_id": user["id"],
                            "address": address, "expires": now + TICKET_SECONDS}
    return ticket


def _hook_url() -> str:
    host, _, port = common.config().server.listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/git/-/hook"


@blueprint.route("/git/-/hook/<name>", methods=["POST"])
@guard.self_authenticated
def hook(name: str):
    with _tickets_lock:
        grant = _tickets.get(request.headers.get("X-Appliance-Ticket", ""))
    if grant is None or grant["expires"] < time.monotonic() or name not in (
            "pre-receive", "post-receive"):
        return _plain("unknown or expired push ticket", 403)
    updates = request.get_data(as_text=True)
    try:
        lines = gitserve.hook_answer(common.db(), common.config(), grant["project_id"],
                                     grant["user_id"], name, updates, grant["address"])
    except UserError as exc:
        return _plain(str(exc), 400)
    return _plain("\n".join(lines), 200)
