"""The proxy kept in step with the builds: Caddy's whole configuration, loaded again on
every change and whenever Caddy comes back without it.

refresh   compute the routes from the store and load them when they changed; called when
          a server starts or is about to stop (jobs/containers.py) and at start-up. A
          failure is logged, never raised: a build must not fail because the proxy is
          down, and `watch` loads the configuration once Caddy is back
watch     the scheduler's job, every [proxy] check_seconds: Caddy restarted without our
          configuration (its marker is gone) -> load it again; routes changed without
          a hook (GC dropped a build) -> load them
serves    whether a name is one the appliance serves (the on-demand TLS question)
loads, wait_for_load
          how many configurations this process loaded so far, and a wait for the next
          one (a visit held while its sleeping build wakes up)

Without [proxy] base_domain all of this does nothing: builds keep their loopback
addresses.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

from appliance.jobs import proxy_config
from appliance.runtime.caddy import Caddy, ProxyError
from appliance.store import domains as domains_store
from appliance.store import routes as routes_store

log = logging.getLogger(__name__)

# After Caddy stops routing to a server, requests it already sent there get this long to
# be answered before the server is stopped (Caddy's load does not wait for them).
DRAIN_SECONDS = 0.5


@dataclass
class ProxyState:
    caddy: Caddy
    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded: str = ""                       # the marker of the document Caddy last took
    # Builds whose server is being stopped: counted as stopped by every refresh until
    # their state says so (a concurrent refresh must not route to them again).
    leaving: set = field(default_factory=set)
    loads: int = 0                         # configurations loaded so far
    loaded_one: threading.Condition = field(default_factory=threading.Condition)


def enabled(svc) -> bool:
    return bool(svc.config.proxy.base_domain)


# One per Caddy this process drives: the pipelines' and the web's services share it.
_states: dict[str, ProxyState] = {}
_states_lock = threading.Lock()


def _state(svc) -> ProxyState:
    admin = svc.config.proxy.admin
    with _states_lock:
        if admin not in _states:
            _states[admin] = ProxyState(Caddy(admin))
        return _states[admin]


def desired(svc, leaving: frozenset = frozenset()) -> tuple[list, dict]:
    """The routes and Caddy's document for the store as it is now."""
    with svc.db.transaction() as conn:
        builds = routes_store.routed_builds(conn)
        domains = domains_store.all_domains(conn)
    routes = proxy_config.plan_routes(svc.config, builds, leaving, domains)
    settings = proxy_config.Settings.from_config(svc.config)
    return routes, proxy_config.caddy_config(settings, routes)


@contextlib.contextmanager
def leaving(svc, build_id: int):
    """For the block, the build's names answer as if its server were already stopped:
    wrap the stop of a server and the store's update of its state."""
    if not enabled(svc):
        yield
        return
    state = _state(svc)
    with state.lock:
        state.leaving.add(build_id)
    try:
        if refresh(svc):
            time.sleep(DRAIN_SECONDS)
        yield
    finally:
        with state.lock:
            state.leaving.discard(build_id)
    refresh(svc)


def refresh(svc, force: bool = False) -> bool:
    """Load the routes into Caddy when they changed (always with `force`). True when Caddy
    runs the current routes; False (logged) when it could not be reached or refused."""
    if not enabled(svc):
        return True
    state = _state(svc)
    with state.lock:
        routes, document = desired(svc, frozenset(state.leaving))
        marker = proxy_config.marker(document)
        if marker == state.loaded and not force:
            return True
        try:
            state.caddy.load(document)
        except ProxyError as exc:
            state.loaded = ""
            log.warning("proxy: %s; the routes are loaded again when Caddy answers", exc)
            return False
        state.loaded = marker
        log.info("proxy: %d name(s) loaded into Caddy", len(routes))
    with state.loaded_one:
        state.loads += 1
        state.loaded_one.notify_all()
    return True


def loads(svc) -> int:
    """How many configurations this process has loaded into Caddy so far."""
    return _state(svc).loads if enabled(svc) else 0


def wait_for_load(svc, after: int, timeout: float) -> None:
    """Return once Caddy took a configuration past the `after`th (`loads`), or after
    `timeout` seconds."""
    if not enabled(svc):
        time.sleep(timeout)
        return
    state = _state(svc)
    with state.loaded_one:
        state.loaded_one.wait_for(lambda: state.loads > after, timeout)


def watch(svc) -> None:
    """Caddy still has the configuration last loaded; if not (it restarted without it,
    or was down when a change came), load it again."""
    if not enabled(svc):
        return
    state = _state(svc)
    try:
        present = bool(state.loaded) and state.caddy.has(state.loaded)
    except ProxyError as exc:
        log.warning("proxy: %s", exc)
        return
    if not present:
        log.info("proxy: Caddy runs without the appliance's routes; loading them")
    # Also catches a change no hook announced (a build dropped by GC, a reconcile).
    refresh(svc, force=not present)


def serves(cfg, db, host: str) -> bool:
    """Whether `host` is a name the appliance answers (for on-demand certificates): read
    from the store at each question, which Caddy asks once per new name."""
    if not cfg.proxy.base_domain:
        return False
    with db.transaction() as conn:
        builds = routes_store.routed_builds(conn)
        domains = domains_store.all_domains(conn)
    names = proxy_config.hosts(proxy_config.plan_routes(cfg, builds, domains=domains))
    return host.lower().rstrip(".") in names
