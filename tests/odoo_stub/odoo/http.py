"""The HTTP service: a few routes on the standard library's threading server.

`/web/health` always answers `{"status": "pass"}` (it says the process is alive,
even when PostgreSQL is down, as in Odoo); `/web/login` answers 200 only when the
database answers a query; `/` redirects to `/web/login`. Each request is logged
under `werkzeug` like Odoo's request lines (queries, SQL time, other time).
`/websocket` takes a WebSocket upgrade as Odoo's bus does, and answers each text message
with a JSON echo of it and of what the request carried (the scheme and host the proxy
forwarded, the cookies), so tests see what reaches a build.
"""

import base64
import hashlib
import html
import json
import struct
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import psycopg2

from . import netsvc, sql_db
from .tools import config

_logger = logging.getLogger("werkzeug")

_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Odoo</title></head>
<body><form class="oe_login_form" method="post" action="/web/login">
<input type="hidden" name="db" value="{db}"/>
<label for="login">Email</label><input type="text" name="login" id="login" required="required"/>
<label for="password">Password</label><input type="password" name="password" id="password" required="required"/>
<button type="submit">Log in</button>
</form></body></html>
"""


def _json(status, payload):
    body = json.dumps(payload).encode()
    return status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, body


def health(_handler):
    return _json(200, {"status": "pass"})


def login(_handler):
    dbname = (config.get("db_name") or "").split(",")[0]
    if not dbname:
        return 500, {"Content-Type": "text/plain"}, b"No database selected\n"
    try:
        cnx = sql_db.connect(dbname, connect_timeout=5)
        try:
            with cnx.cursor() as cr:
                cr.execute("SELECT count(1) FROM res_users")
        finally:
            cnx.close()
    except psycopg2.Error as exc:
        _logger.debug("login page: database %s not ready: %s", dbname, exc)
        return 500, {"Content-Type": "text/plain"}, b"Internal Server Error\n"
    page = _LOGIN_PAGE.format(db=html.escape(dbname)).encode()
    return 200, {"Content-Type": "text/html; charset=utf-8"}, page


def root(_handler):
    return 303, {"Location": "/web/login", "Content-Type": "text/plain"}, b""


ROUTES = {"/web/health": health, "/web/login": login, "/": root, "/odoo": root, "/web": root}


def not_found(_handler):
    return 404, {"Content-Type": "text/plain"}, b"Not Found\n"


class RequestHandler(BaseHTTPRequestHandler):
    server_version = "Werkzeug/2.2.2"

    def handle(self):
        netsvc.set_dbname((config.get("db_name") or "?").split(",")[0])
        super().handle()

    def do_GET(self):
        if urlsplit(self.path).path == "/websocket":
            self._websocket()
            return
        self._dispatch(send_body=True)

    def _websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        seen = {"forwarded_proto": self.headers.get("X-Forwarded-Proto", ""),
                "forwarded_host": self.headers.get("X-Forwarded-Host", ""),
                "cookie": self.headers.get("Cookie", "")}
        while (message := _read_frame(self.rfile)) is not None:
            reply = json.dumps({"echo": message, **seen}).encode()
            self.wfile.write(bytes([0x81]) + _frame_length(len(reply)) + reply)
            self.wfile.flush()
        self.close_connection = True

    def do_HEAD(self):
        self._dispatch(send_body=False)

    def _dispatch(self, send_body):
        self._started = time.time()
        route = ROUTES.get(urlsplit(self.path).path, not_found)
        status, headers, body = route(self)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        elapsed = time.time() - getattr(self, "_started", time.time())
        _logger.info('%s - - [%s] "%s" %s %s', self.address_string(), self.log_date_time_string(),
                     self.requestline, code, size, extra={"perf_info": f"0 0.000 {elapsed:.3f}"})

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        _logger.debug(format, *args)


def _read_frame(stream):
    """One text frame from the client (masked, as clients send them); None at a close."""
    head = stream.read(2)
    if len(head) < 2 or head[0] & 0x0F == 0x8:
        return None
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack(">H", stream.read(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", stream.read(8))[0]
    mask = stream.read(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = stream.read(length)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data)).decode(errors="replace")


def _frame_length(length):
    if length < 126:
        return bytes([length])
    if length < 65536:
        return bytes([126]) + struct.pack(">H", length)
    return bytes([127]) + struct.pack(">Q", length)


class HttpService:
    """The HTTP server in a daemon thread."""

    def __init__(self):
        self.httpd = None
        self.thread = None

    def start(self):
        interface = config.get("http_interface") or ""
        port = int(config.get("http_port") or 8069)
        self.httpd = ThreadingHTTPServer((interface or "0.0.0.0", port), RequestHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="odoo.service.httpd", daemon=True)
        self.thread.start()
        return interface, port

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
