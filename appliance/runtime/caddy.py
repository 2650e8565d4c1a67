"""Caddy, the reverse proxy in front of the UI and the builds, through its admin API.

The daemon owns Caddy's whole configuration: jobs/proxy.py computes it from the state and
`load`s it. Debian's caddy-api unit runs `caddy run --resume`, so Caddy keeps the last
configuration it loaded across its own restarts; one that came back without it (a start
without --resume, another admin's load) is told by the marker the configuration carries
(an object with `"@id": <marker>`): `has(marker)` is then False and the daemon loads it
again.

Nothing here knows of projects or builds: a JSON document in, Caddy's answer out.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
from urllib.parse import quote

from appliance.errors import SystemFailure

log = logging.getLogger(__name__)

# Caddy answers its admin API at once; a config load that provisions certificates
# (on-demand TLS defers them to the first handshake) stays well under this.
TIMEOUT_SECONDS = 30.0


class ProxyError(SystemFailure):
    """Caddy could not be reached, or refused a configuration (its message says why)."""


class Caddy:
    def __init__(self, admin: str, timeout: float = TIMEOUT_SECONDS):
        host, _, port = admin.rpartition(":")
        if not host or not port.isdigit():
            raise ProxyError(f"[proxy] admin = {admin!r}: expected host:port")
        self.host, self.port, self.timeout = host.strip("[]"), int(port), timeout
        self.admin = admin

    def load(self, config: dict) -> None:
        """Replace Caddy's whole configuration (POST /load): all or nothing, Caddy keeps
        the previous one when it refuses this one."""
        status, body = self._request("POST", "/load", json.dumps(config).encode())
        if status != 200:
            raise ProxyError(f"Caddy refused the configuration: {_message(body)}")

    def has(self, marker: str) -> bool:
        """Whether the configuration Caddy runs holds the object `"@id": marker`."""
        status, body = self._request("GET", f"/id/{quote(marker, safe='')}")
        if status == 200:
            return True
        if status in (400, 404):  # Caddy 2.6 says "unknown object ID" with a 400
            return False
        raise ProxyError(f"Caddy's admin API answered {status}: {_message(body)}")

    def config(self) -> dict | None:
        """The configuration Caddy runs (None when it runs none)."""
        status, body = self._request("GET", "/config/")
        if status != 200:
            raise ProxyError(f"Caddy's admin API answered {status}: {_message(body)}")
        return json.loads(body or b"null")

    def reachable(self) -> bool:
        try:
            self._request("GET", "/config/")
        except ProxyError:
            return False
        return True

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        # Caddy checks the Host (and Origin) of admin requests against its listen address.
        headers = {"Host": self.admin, "Content-Type": "application/json"}
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, socket.timeout, http.client.HTTPException) as exc:
            raise ProxyError(f"cannot reach Caddy's admin API at {self.admin}: {exc} "
                             "(is the caddy-api service running?)") from None
        finally:
            conn.close()


def _message(body: bytes) -> str:
    """Caddy's own error text ({"error": "..."}), or the body as it came."""
    text = body.decode(errors="replace").strip()
    try:
        return json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        return text[:500] or "(no message)"


def served_certificate(port: int, name: str, timeout: float = 3.0) -> str:
    """What Caddy presents for `name` on 127.0.0.1:port: "valid until <date> (<issuer>)",
    or why there is none yet. Read with openssl, trusting nothing: this is a report."""
    import ssl
    import subprocess
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=name) as conn:
                der = conn.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        return f"none yet ({exc.__class__.__name__})"
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-enddate",
                          "-issuer", "-ext", "subjectAltName"], input=der,
                         capture_output=True, timeout=timeout)
    text = out.stdout.decode(errors="replace")
    if out.returncode != 0:
        return "unreadable certificate"
    covered = f"DNS:{name}" in text or f"DNS:*.{name.split('.', 1)[-1]}" in text
    until = text.split("notAfter=", 1)[-1].splitlines()[0].strip()
    issuer = text.split("issuer=", 1)[-1].splitlines()[0].strip()
    if not covered:
        return f"a certificate that does not name {name} (issuer {issuer})"
    return f"valid until {until} ({issuer})"
