"""The proxy's routes and Caddy's configuration for them: pure functions, no sockets.

plan_routes   the store's builds -> one Route per name: the UI at the base domain, each
              build at <branch>-<id>.<project>.<domain>, each branch at
              <branch>.<project>.<domain> (its newest running build), and for names with
              no server: a maintenance page (a build of the branch is getting ready: a
              full deploy, a restore) or the daemon's "stopped" page
caddy_config  the routes -> the whole JSON document Caddy loads, with a marker object
              ("@id") named after its own digest, so a Caddy that lost it can be told

Caddy reaches builds on their loopback-published ports, not on their project networks:
the port is in the store already (the health check uses it), it does not change when
Docker restarts a container onto another address, and a Caddy on every project's network
would be the one process that bridges them all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from appliance import layout
from appliance.config import Config
from appliance.store.states import BuildState

# Paths of the daemon that only Caddy may call (the on-demand TLS question, the stopped
# page): the UI's own route answers them 404 from outside.
INTERNAL_PREFIX = "/_proxy"
SERVER_NAME = "appliance"
# How long a request whose upstream failed is tried again (see _proxy).
RETRY_SECONDS = 2
# The UI's path of the terminals' WebSocket (appliance.shell.websocket.PATH).
SHELL_PATH = "/-/shell/"
# The header that carries a request's own path to the daemon's pages (wake, stopped).
ORIGINAL_URI = "X-Appliance-Uri"
# The cookie that lets members through to private builds (set for the base domain).
ACCESS_COOKIE = "appliance_access"
MAINTENANCE_HTML = ("<!doctype html><meta charset=utf-8><title>Maintenance</title>"
                    "<meta http-equiv=refresh content={retry}>"
                    "<body style='font-family:sans-serif;margin:4em'>"
                    "<h1>Down for maintenance</h1><p>{what} is being updated. This page "
                    "reloads by itself; it will be back in a moment.</p>")
NOT_FOUND_HTML = ("<!doctype html><meta charset=utf-8><title>Unknown address</title>"
                  "<body style='font-family:sans-serif;margin:4em'><h1>Nothing here</h1>"
                  "<p>No build answers at this address.</p>")


@dataclass(frozen=True)
class Route:
    """What one name answers."""

    host: str
    action: str                 # "ui", "build", "maintenance", "stopped", "asleep"
    upstream: str = ""          # host:port, for "ui" and "build"
    build_id: int | None = None
    label: str = ""             # for people: "acme/main"
    watched: bool = False       # each request passes the daemon first (use, access)
    target: str = ""            # "redirect": the name it sends visitors to


@dataclass(frozen=True)
class Settings:
    """What of the configuration the Caddy document depends on."""

    base_domain: str
    daemon: str                 # where Caddy reaches the UI: host:port
    admin: str
    https_port: int
    http_port: int
    tls: str
    certificate_path: str = ""
    key_path: str = ""
    acme_email: str = ""
    retry_after: int = 30
    upstream_host: str = "127.0.0.1"
    shell: str = ""             # the shell's WebSocket server: host:port

    @classmethod
    def from_config(cls, cfg: Config) -> "Settings":
        proxy = cfg.proxy
        return cls(base_domain=proxy.base_domain, daemon=cfg.server.listen, admin=proxy.admin,
                   https_port=proxy.https_port, http_port=proxy.http_port, tls=proxy.tls,
                   certificate_path=proxy.certificate_path, key_path=proxy.key_path,
                   acme_email=proxy.acme_email, retry_after=proxy.retry_after_seconds,
                   upstream_host=_loopback(cfg.runtime.publish_interface),
                   shell=cfg.shell.listen)


def _loopback(interface: str) -> str:
    return "[::1]" if interface == "::1" else "127.0.0.1"


# -- which name answers what --------------------------------------------------------------

def plan_routes(cfg: Config, builds: list[dict], leaving: frozenset = frozenset(),
                domains: list[dict] = ()) -> list[Route]:
    """Routes for the builds the store lists (store.routes.routed_builds), the ones in
    `leaving` counted as stopped already (their server is about to go), and for the
    branches' custom domains (store.domains.all_domains): the primary answers as the
    branch's own name does, the others redirect to it."""
    settings = Settings.from_config(cfg)
    routes = [Route(settings.base_domain, "ui", settings.daemon, label="the appliance")]
    by_branch: dict[int, list[dict]] = {}
    for build in builds:
        by_branch.setdefault(build["branch_id"], []).append(build)
    named: dict[int, list[dict]] = {}
    for domain in domains:
        named.setdefault(domain["branch_id"], []).append(domain)
    for branch_id, branch_builds in by_branch.items():
        own = _branch_routes(cfg, settings, branch_builds, leaving)
        routes.extend(own)
        routes.extend(_domain_routes(own[-1] if own else None, named.get(branch_id, [])))
    return routes


def _domain_routes(branch_route: Route | None, domains: list[dict]) -> list[Route]:
    primary = next((d["name"] for d in domains if d["is_primary"]), None)
    if branch_route is None or primary is None:
        return []
    routes = []
    for domain in domains:
        if domain["name"] == primary:
            routes.append(dataclasses.replace(branch_route, host=primary))
        else:
            routes.append(Route(domain["name"], "redirect", target=primary,
                                label=branch_route.label))
    return routes


def _branch_routes(cfg: Config, settings: Settings, builds: list[dict],
                   leaving: frozenset) -> list[Route]:
    first = builds[0]
    label = f"{first['project']}/{first['branch']}"
    serving = [b for b in builds if _serves(b, leaving)]
    watched = first["stage"] != "production"  # production never sleeps
    routes = []
    for build in builds:
        host = layout.build_host(cfg, build["project"], build["branch"], build["id"])
        if build in serving:
            routes.append(Route(host, "build", f"{settings.upstream_host}:{build['host_port']}",
                                build["id"], label, watched))
        elif _idle(build):
            routes.append(Route(host, _idle_action(build, leaving), settings.daemon,
                                build["id"], label))
    branch_host = layout.branch_host(cfg, first["project"], first["branch"])
    in_progress = [b for b in builds if not _idle(b)]
    if serving:
        newest = serving[-1]
        routes.append(Route(branch_host, "build",
                            f"{settings.upstream_host}:{newest['host_port']}", newest["id"],
                            label, watched))
    elif in_progress:  # a full deploy, a restore, a first build: back in a moment
        routes.append(Route(branch_host, "maintenance", build_id=in_progress[-1]["id"],
                            label=label))
    elif _idle(builds[-1]):
        routes.append(Route(branch_host, _idle_action(builds[-1], leaving), settings.daemon,
                            builds[-1]["id"], label))
    return routes


def _idle(build: dict) -> bool:
    """Stopped or running, or waking up: a sleeping build's start keeps its names at
    the wake-up, where visits wait for it (nor does Caddy load new routes meanwhile)."""
    waking = build["state"] == BuildState.STARTING and build.get("asleep")
    return build["state"] in (BuildState.STOPPED, BuildState.RUNNING) or bool(waking)


def _idle_action(build: dict, leaving: frozenset) -> str:
    """A build without a server: asleep ones wake on a visit, others show a page."""
    asleep = build.get("asleep") and build["id"] not in leaving
    return "asleep" if asleep and build["stage"] != "production" else "stopped"


def _serves(build: dict, leaving: frozenset) -> bool:
    return (build["state"] == BuildState.RUNNING and bool(build["host_port"])
            and build["id"] not in leaving)


# -- Caddy's document ---------------------------------------------------------------------

def caddy_config(settings: Settings, routes: list[Route]) -> dict:
    """The whole configuration Caddy loads for these routes."""
    server = {
        "listen": [f":{settings.https_port}"],
        "routes": [_route(settings, route) for route in routes] + [_not_found()],
    }
    if settings.tls == "files":
        # The certificate given covers the appliance's own names (Caddy picks it by the
        # name asked for); custom domains, which it cannot cover, get theirs from Let's
        # Encrypt as Caddy does by itself.
        own = [r.host for r in routes if _is_own(settings, r.host)]
        server["automatic_https"] = {"skip_certificates": own}
    document = {
        "admin": {"listen": settings.admin},
        "apps": {"http": {"http_port": settings.http_port, "https_port": settings.https_port,
                          "servers": {SERVER_NAME: server}},
                 "tls": _tls(settings, [r.host for r in routes])},
    }
    if settings.tls == "internal":
        # Caddy's own CA signs; it must not add its root to this host's trust store.
        document["apps"]["pki"] = {"certificate_authorities": {"local": {
            "install_trust": False}}}
    server["@id"] = marker(document)
    return document


def marker(document: dict) -> str:
    """The name of the marker object: the digest of the document without it."""
    body = json.loads(json.dumps(document))
    body["apps"]["http"]["servers"][SERVER_NAME].pop("@id", None)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return f"appliance-{digest}"


def _route(settings: Settings, route: Route) -> dict:
    match = [{"host": [route.host]}]
    if route.action == "ui":
        handle = [_subroute([
            {"match": [{"path": [INTERNAL_PREFIX, f"{INTERNAL_PREFIX}/*"]}],
             "handle": [_static(404, NOT_FOUND_HTML)], "terminal": True},
            *_shell_route(settings),
            {"handle": [_proxy(route.upstream)]}])]
    elif route.action == "build":
        handle = ([*_watch(settings, route), _proxy(route.upstream)] if route.watched
                  else [_proxy(route.upstream)])
    elif route.action == "maintenance":
        handle = [{"handler": "headers",
                   "response": {"set": {"Retry-After": [str(settings.retry_after)],
                                        "Cache-Control": ["no-store"]}}},
                  _static(503, MAINTENANCE_HTML.format(retry=settings.retry_after,
                                                       what=_html(route.label)))]
    elif route.action == "redirect":  # another domain of the branch: to its primary
        port = "" if settings.https_port == 443 else f":{settings.https_port}"
        handle = [{"handler": "static_response", "status_code": 308, "headers": {
            "Location": [f"https://{route.target}{port}{{http.request.uri}}"]}}]
    elif route.action in ("stopped", "asleep"):
        where = "wake" if route.action == "asleep" else "stopped"
        forward = _proxy(route.upstream)
        # The visit's own path and query, as it came (orig_uri: before the rewrite).
        forward["headers"] = {"request": {"set": {ORIGINAL_URI: ["{http.request.orig_uri}"]}}}
        handle = [{"handler": "rewrite", "uri": f"{INTERNAL_PREFIX}/{where}/{route.build_id}"},
                  forward]
    else:
        raise ValueError(f"unknown route action {route.action!r}")
    return {"match": match, "handle": handle, "terminal": True}


def _shell_route(settings: Settings) -> list[dict]:
    """The terminals' WebSocket path of the UI's name goes to the shell's server."""
    if not settings.shell:
        return []
    return [{"match": [{"path": [SHELL_PATH, f"{SHELL_PATH}*"]}],
             "handle": [_proxy(settings.shell)], "terminal": True}]


def _watch(settings: Settings, route: Route) -> list[dict]:
    """Caddy's forward_auth: the daemon's /_proxy/auth/<build> answers 2xx (the request
    goes on, the build noted as used) or its own answer (a redirect to sign in) that the
    client gets instead. The appliance's access cookie is then taken out of the request:
    the build's code never sees it."""
    ask = {"handler": "reverse_proxy", "upstreams": [{"dial": settings.daemon}],
           "rewrite": {"method": "GET", "uri": f"{INTERNAL_PREFIX}/auth/{route.build_id}"},
           # A websocket's upgrade is for the build, not for the question (Werkzeug
           # answers an upgrade to a plain route with a 400).
           "headers": {"request": {"set": {"X-Forwarded-Method": ["{http.request.method}"],
                                           ORIGINAL_URI: ["{http.request.uri}"]},
                                   "delete": ["Upgrade", "Connection", "Sec-WebSocket-Key",
                                              "Sec-WebSocket-Version",
                                              "Sec-WebSocket-Extensions"]}},
           "handle_response": [{"match": {"status_code": [2]}, "routes": [{"handle": [
               {"handler": "headers", "request": {"delete": [ORIGINAL_URI]}}]}]}]}
    strip = {"handler": "headers", "request": {"replace": {"Cookie": [
        {"search_regexp": f"(^|;\\s*){ACCESS_COOKIE}=[^;]*", "replace": ""}]}}}
    return [ask, strip]


def _proxy(upstream: str) -> dict:
    # Caddy's default flushing: a response without a length (a live log, an event
    # stream) goes out as it is written; websockets pass through as they are. Never
    # flush_interval -1: Caddy 2.6 then ties every request to the configuration it came
    # in under, and cancels it when a new one is loaded (a held wake-up visit, a long
    # request of another build, whenever any server starts or stops).
    # Caddy sets X-Forwarded-For/-Proto/-Host itself. A GET whose upstream cannot be
    # reached (a server restarting) is tried again for up to RETRY_SECONDS.
    return {"handler": "reverse_proxy", "upstreams": [{"dial": upstream}],
            "load_balancing": {"try_duration": f"{RETRY_SECONDS}s", "try_interval": "100ms"}}


def _subroute(routes: list[dict]) -> dict:
    return {"handler": "subroute", "routes": routes}


def _static(status: int, body: str) -> dict:
    return {"handler": "static_response", "status_code": status,
            "headers": {"Content-Type": ["text/html; charset=utf-8"]}, "body": body}


def _not_found() -> dict:
    """Any other name on the server: 404 (a name without a certificate never gets here)."""
    return {"handle": [_static(404, NOT_FOUND_HTML)], "terminal": True}


def _is_own(settings: Settings, host: str) -> bool:
    return host == settings.base_domain or host.endswith("." + settings.base_domain)


def _tls(settings: Settings, hosts: list[str]) -> dict:
    if settings.tls == "files":
        tls = {"certificates": {"load_files": [
            {"certificate": settings.certificate_path, "key": settings.key_path,
             "tags": [SERVER_NAME]}]}}
        if settings.acme_email:
            tls["automation"] = {"policies": [{"issuers": [
                {"module": "acme", "email": settings.acme_email}]}]}
        return tls
    if settings.tls == "internal":
        return {"automation": {"policies": [
            {"subjects": sorted(set(hosts)), "issuers": [{"module": "internal"}]}]}}
    issuer = {"module": "acme", **({"email": settings.acme_email} if settings.acme_email else {})}
    # A certificate per name, asked for at the first handshake, and only for names the
    # daemon says it serves (the ask endpoint): nobody can make it request others.
    return {"automation": {
        "policies": [{"issuers": [issuer], "on_demand": True}],
        "on_demand": {"ask": f"http://{settings.daemon}{INTERNAL_PREFIX}/ask"}}}


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&#39;").replace('"', "&quot;"))


def hosts(routes: list[Route]) -> set[str]:
    """The names the routes serve (the on-demand TLS question's yes)."""
    return {route.host for route in routes}
