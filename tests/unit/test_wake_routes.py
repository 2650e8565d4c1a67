"""What a sleeping build's names answer while it wakes up, and what Caddy is told for
builds' upstreams (pure functions, no Caddy)."""

from appliance.jobs import proxy_config
from tests.unit.test_proxy_config import build, by_host, make_config


def plan(*builds):
    return by_host(proxy_config.plan_routes(make_config(), list(builds)))


def test_a_waking_build_keeps_both_names_at_the_wake_up_where_visits_wait_for_it():
    waking = {**build(3, state="starting", branch="dev", stage="development"), "asleep": True}
    routes = plan(waking)
    assert routes["dev-3.acme.apps.example.com"].action == "asleep"
    assert routes["dev.acme.apps.example.com"].action == "asleep"
    # The same routes as while it slept: waking it loads nothing new into Caddy.
    asleep = {**waking, "state": "stopped"}
    assert plan(asleep) == routes


def test_a_build_starting_for_another_reason_shows_the_maintenance_page_on_its_branch():
    starting = {**build(3, state="starting", branch="dev", stage="development"),
                "asleep": False}
    routes = plan(starting)
    assert "dev-3.acme.apps.example.com" not in routes
    assert routes["dev.acme.apps.example.com"].action == "maintenance"


def test_caddy_keeps_its_default_flushing_so_a_new_configuration_cuts_no_request():
    # flush_interval -1 ties each request to the configuration it came in under: Caddy
    # 2.6 cancels it when another is loaded (a held wake-up visit would get a 502).
    settings = proxy_config.Settings.from_config(make_config())
    route = plan(build(4, port=18004))["main-4.acme.apps.example.com"]
    [proxy] = proxy_config._route(settings, route)["handle"]
    assert proxy["handler"] == "reverse_proxy" and "flush_interval" not in proxy
