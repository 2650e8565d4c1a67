"""The HTTP service: a few routes on the standard library's threading server.

`/web/health` always answers `{"status": "pass"}` (it says the process is alive,
even when PostgreSQL is down, as in Odoo); `/web/login` answers 200 only when the
database answers a query; `/` redirects to `/web/login`. Each request is logged
under `werkzeug` like Odoo's request lines (queries, SQL time, other time).
"""

import html
import json
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
        self._dispatch(send_body=True)

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
