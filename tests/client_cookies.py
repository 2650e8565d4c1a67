"""Cookies of Flask's test client on both Werkzeug APIs the tests run on: 2.3 and later
(PyPI) have get_cookie(key) and set_cookie(key, value); Debian 12's 2.2 has a cookie jar
and set_cookie(server_name, key, value)."""

from __future__ import annotations


def get_cookie(client, key: str) -> str | None:
    """The value of the cookie `key` the client holds, or None."""
    if hasattr(client, "get_cookie"):
        cookie = client.get_cookie(key)
        return cookie.value if cookie is not None else None
    return next((c.value for c in client.cookie_jar if c.name == key), None)


def set_cookie(client, key: str, value: str) -> None:
    """Give the client the cookie `key` for the test server (localhost)."""
    if hasattr(client, "get_cookie"):
        client.set_cookie(key, value)
    else:
        client.set_cookie("localhost", key, value)
