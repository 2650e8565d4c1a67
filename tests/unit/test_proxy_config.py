"""The proxy's routes and Caddy's document, from the store's builds: which name answers
what, and what Caddy is told (pure functions, no Caddy)."""

import dataclasses

import pytest

from appliance import config as config_mod
from appliance import layout
from appliance.errors import ConfigError
from appliance.jobs import proxy_config


def make_config(**proxy) -> config_mod.Config:
    cfg = config_mod.Config()
    cfg.server.listen = "127.0.0.1:8080"
    cfg.proxy = dataclasses.replace(cfg.proxy, base_domain="apps.example.com", **proxy)
    return cfg


def build(build_id, state="running", port=18000, branch="main", stage="production",
          branch_id=1, project="acme"):
    return {"id": build_id, "state": state, "host_port": port if state == "running" else None,
            "database": f"db{build_id}", "branch_id": branch_id, "trigger": "push",
            "branch": branch, "stage": stage, "project": project, "project_id": 1}


def by_host(routes):
    return {route.host: route for route in routes}


def test_a_branch_slug_is_a_dns_label_and_lossy_names_never_collide():
    assert layout.branch_slug("main") == "main"
    assert layout.branch_slug("feature-x") == "feature-x"
    lossy = layout.branch_slug("feature/x")
    assert lossy.startswith("feature-x-") and lossy != layout.branch_slug("feature_x")
    assert layout.branch_slug("Main") != "main"
    assert len(layout.branch_slug("a" * 200)) <= layout.SLUG_MAX
    for name in ("---", "é", "../..", "a b"):
        slug = layout.branch_slug(name)
        assert slug and all(c.isascii() and (c.isalnum() or c == "-") for c in slug)


def test_the_ui_each_running_build_and_each_branch_get_a_name():
    cfg = make_config()
    routes = by_host(proxy_config.plan_routes(cfg, [build(7, port=18007),
                                                    build(9, port=18009)]))
    assert routes["apps.example.com"].action == "ui"
    assert routes["apps.example.com"].upstream == "127.0.0.1:8080"
    assert routes["main-7.acme.apps.example.com"].upstream == "127.0.0.1:18007"
    assert routes["main-9.acme.apps.example.com"].upstream == "127.0.0.1:18009"
    # The branch's name follows its newest running build.
    assert routes["main.acme.apps.example.com"].upstream == "127.0.0.1:18009"


def test_production_answers_maintenance_while_a_deploy_stopped_its_server():
    cfg = make_config()
    builds = [build(7, port=18007), build(8, state="installing")]
    routes = by_host(proxy_config.plan_routes(cfg, builds, leaving=frozenset({7})))
    assert routes["main.acme.apps.example.com"].action == "maintenance"
    assert routes["main-7.acme.apps.example.com"].action == "stopped"
    assert "main-8.acme.apps.example.com" not in routes  # no server yet, nothing to show
    # Once the new build serves, the branch's name is back on it.
    builds = [build(7, state="stopped"), build(8, port=18008)]
    routes = by_host(proxy_config.plan_routes(cfg, builds))
    assert routes["main.acme.apps.example.com"].upstream == "127.0.0.1:18008"


def test_a_stopped_build_answers_the_daemon_s_stopped_page():
    cfg = make_config()
    routes = by_host(proxy_config.plan_routes(
        cfg, [build(3, state="stopped", branch="dev", stage="development")]))
    assert routes["dev-3.acme.apps.example.com"].action == "stopped"
    assert routes["dev.acme.apps.example.com"].action == "stopped"
    document = proxy_config.caddy_config(proxy_config.Settings.from_config(cfg),
                                         list(routes.values()))
    dumped = str(document)
    assert "/_proxy/stopped/3" in dumped


def test_caddy_s_document_carries_a_marker_that_changes_with_the_routes():
    cfg = make_config()
    settings = proxy_config.Settings.from_config(cfg)
    one = proxy_config.caddy_config(settings, proxy_config.plan_routes(cfg, [build(7)]))
    again = proxy_config.caddy_config(settings, proxy_config.plan_routes(cfg, [build(7)]))
    two = proxy_config.caddy_config(settings, proxy_config.plan_routes(cfg, [build(8)]))
    marker = one["apps"]["http"]["servers"]["appliance"]["@id"]
    assert marker == proxy_config.marker(one) == again["apps"]["http"]["servers"]["appliance"]["@id"]
    assert marker != two["apps"]["http"]["servers"]["appliance"]["@id"]


def test_the_ui_route_hides_the_daemon_s_internal_paths_and_unknown_names_404():
    cfg = make_config()
    document = proxy_config.caddy_config(proxy_config.Settings.from_config(cfg),
                                         proxy_config.plan_routes(cfg, []))
    routes = document["apps"]["http"]["servers"]["appliance"]["routes"]
    ui = routes[0]["handle"][0]["routes"][0]
    assert ui["match"][0]["path"] == ["/_proxy", "/_proxy/*"]
    assert ui["handle"][0]["status_code"] == 404
    assert routes[-1]["handle"][0]["status_code"] == 404 and "match" not in routes[-1]


def test_each_tls_mode_gives_caddy_its_certificates():
    internal = make_config(tls="internal")
    doc = proxy_config.caddy_config(proxy_config.Settings.from_config(internal),
                                    proxy_config.plan_routes(internal, [build(7)]))
    policy = doc["apps"]["tls"]["automation"]["policies"][0]
    assert policy["issuers"] == [{"module": "internal"}]
    assert "main-7.acme.apps.example.com" in policy["subjects"]

    files = make_config(tls="files", certificate_path="/etc/c.pem", key_path="/etc/k.pem")
    doc = proxy_config.caddy_config(proxy_config.Settings.from_config(files),
                                    proxy_config.plan_routes(files, []))
    assert doc["apps"]["tls"]["certificates"]["load_files"][0]["certificate"] == "/etc/c.pem"
    assert doc["apps"]["http"]["servers"]["appliance"]["automatic_https"] == {
        "skip_certificates": ["apps.example.com"]}

    acme = make_config(tls="acme", acme_email="ops@example.com")
    doc = proxy_config.caddy_config(proxy_config.Settings.from_config(acme), [])
    automation = doc["apps"]["tls"]["automation"]
    assert automation["policies"][0]["on_demand"] is True
    assert automation["on_demand"]["ask"] == "http://127.0.0.1:8080/_proxy/ask"


def test_a_label_with_markup_is_escaped_in_the_maintenance_page():
    cfg = make_config()
    settings = proxy_config.Settings.from_config(cfg)
    route = proxy_config.Route("x.apps.example.com", "maintenance", label="<script>x</script>")
    doc = proxy_config.caddy_config(settings, [route])
    body = doc["apps"]["http"]["servers"]["appliance"]["routes"][0]["handle"][1]["body"]
    assert "<script>" not in body and "&lt;script&gt;" in body


@pytest.mark.parametrize("interface", ["0.0.0.0", "192.0.2.10", "::"])
def test_publishing_builds_on_a_public_interface_is_refused(tmp_path, interface):
    path = tmp_path / "a.toml"
    path.write_text(f'[runtime]\npublish_interface = "{interface}"\n')
    with pytest.raises(ConfigError, match="loopback"):
        config_mod.load(path, env={})


def test_tls_from_files_without_the_files_is_refused(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[proxy]\nbase_domain = "x.example.com"\ntls = "files"\n')
    with pytest.raises(ConfigError, match="certificate_path"):
        config_mod.load(path, env={})


def test_development_and_staging_requests_pass_the_daemon_and_lose_the_access_cookie():
    import re
    cfg = make_config()
    settings = proxy_config.Settings.from_config(cfg)
    routes = by_host(proxy_config.plan_routes(cfg, [
        build(3, port=18003, branch="dev", stage="development", branch_id=2),
        build(4, port=18004)]))
    dev = proxy_config._route(settings, routes["dev-3.acme.apps.example.com"])["handle"]
    ask, strip, forward = dev
    assert ask["rewrite"]["uri"] == "/_proxy/auth/3"
    assert ask["upstreams"] == [{"dial": "127.0.0.1:8080"}]
    assert forward["upstreams"] == [{"dial": "127.0.0.1:18003"}]
    rule = strip["request"]["replace"]["Cookie"][0]
    pattern = re.compile(rule["search_regexp"])
    for header in ("appliance_access=SECRET", "a=1; appliance_access=SECRET; b=2",
                   "appliance_access=SECRET; session_id=odoo"):
        left = pattern.sub(rule["replace"], header)
        assert "SECRET" not in left and "appliance_access" not in left
    assert pattern.sub("", "a=1; appliance_access=S; b=2") == "a=1; b=2"
    # Production: straight to Odoo, no question asked, nothing taken out.
    production = proxy_config._route(settings, routes["main-4.acme.apps.example.com"])["handle"]
    assert [h["handler"] for h in production] == ["reverse_proxy"]


def test_a_sleeping_build_s_names_lead_to_the_wake_up_and_keep_the_visited_path():
    cfg = make_config()
    asleep = {**build(3, state="stopped", branch="dev", stage="development"), "asleep": True}
    routes = by_host(proxy_config.plan_routes(cfg, [asleep]))
    assert routes["dev-3.acme.apps.example.com"].action == "asleep"
    assert routes["dev.acme.apps.example.com"].action == "asleep"
    handle = proxy_config._route(proxy_config.Settings.from_config(cfg),
                                 routes["dev.acme.apps.example.com"])["handle"]
    assert handle[0] == {"handler": "rewrite", "uri": "/_proxy/wake/3"}
    # The path as visited, not as rewritten: the waking page reloads it.
    assert handle[1]["headers"]["request"]["set"]["X-Appliance-Uri"] == \
        ["{http.request.orig_uri}"]
    # Production is never woken: a stopped production shows the stopped page.
    prod = {**build(4, state="stopped"), "asleep": True}
    assert by_host(proxy_config.plan_routes(cfg, [prod]))["main.acme.apps.example.com"].action \
        == "stopped"


@pytest.mark.parametrize("given", ["//evil.example/", "https://evil.example/", "\\\\evil",
                                   "/\\evil", "", "javascript:alert(1)"])
def test_the_waking_page_only_reloads_a_path_of_the_build_s_own_site(given):
    from appliance.web.proxy import _same_site_path
    assert _same_site_path(given) == "/"
    assert _same_site_path("/web#action=12") == "/web#action=12"


def test_a_branch_s_primary_domain_answers_as_its_name_and_the_others_redirect_to_it():
    cfg = make_config(https_port=8443)
    domains = [{"branch_id": 1, "name": "shop.example.org", "is_primary": True},
               {"branch_id": 1, "name": "example.org", "is_primary": False}]
    routes = by_host(proxy_config.plan_routes(cfg, [build(7, port=18007)], domains=domains))
    assert routes["shop.example.org"].action == "build"
    assert routes["shop.example.org"].upstream == "127.0.0.1:18007"
    assert routes["example.org"].action == "redirect"
    settings = proxy_config.Settings.from_config(cfg)
    handle = proxy_config._route(settings, routes["example.org"])["handle"][0]
    assert handle["status_code"] == 308
    assert handle["headers"]["Location"] == ["https://shop.example.org:8443{http.request.uri}"]
    # During a deploy, the domain answers maintenance as the branch's own name does.
    routes = by_host(proxy_config.plan_routes(cfg, [build(7, port=18007), build(8, "installing")],
                                              leaving=frozenset({7}), domains=domains))
    assert routes["shop.example.org"].action == "maintenance"
    # Certificates: internal signs them; with a file certificate, ACME gets theirs.
    doc = proxy_config.caddy_config(settings, list(routes.values()))
    assert "example.org" in doc["apps"]["tls"]["automation"]["policies"][0]["subjects"]
    files = make_config(tls="files", certificate_path="/c", key_path="/k")
    doc = proxy_config.caddy_config(proxy_config.Settings.from_config(files),
                                    proxy_config.plan_routes(files, [build(7)],
                                                             domains=domains))
    skipped = doc["apps"]["http"]["servers"]["appliance"]["automatic_https"]["skip_certificates"]
    assert "main-7.acme.apps.example.com" in skipped and "shop.example.org" not in skipped


@pytest.mark.parametrize("name, reason", [
    ("", "1 to 253"), ("localhost", "not a domain"), ("10.0.0.1", "address"),
    ("shop..example.com", "not a domain"), ("-shop.example.com", "not a domain"),
    ("shop.example.123", "not a domain"), ("x.apps.example.com", "own domain"),
    ("apps.example.com", "own domain"), ("shop_1.example.com", "not a domain")])
def test_a_bad_custom_domain_is_refused_with_the_reason(name, reason):
    from appliance.errors import UserError
    from appliance.store.domains import check_name
    with pytest.raises(UserError, match=reason):
        check_name(name, "apps.example.com")


def test_a_custom_domain_is_kept_lowercase_without_its_final_dot_and_apex_is_allowed():
    from appliance.store.domains import check_name
    assert check_name("Shop.Example.COM.", "apps.example.com") == "shop.example.com"
    assert check_name("example.com", "apps.example.com") == "example.com"


def test_the_ui_s_name_routes_the_shell_s_websocket_path_to_the_shell_server():
    cfg = make_config()
    cfg.shell.listen = "127.0.0.1:8765"
    routes = proxy_config.plan_routes(cfg, [build(7, port=18007)])
    document = proxy_config.caddy_config(proxy_config.Settings.from_config(cfg), routes)
    server = document["apps"]["http"]["servers"][proxy_config.SERVER_NAME]
    ui = next(r for r in server["routes"] if r.get("match") == [{"host": ["apps.example.com"]}])
    inner = ui["handle"][0]["routes"]
    shell = next(r for r in inner if r.get("match") == [{"path": ["/-/shell/", "/-/shell/*"]}])
    assert shell["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:8765"}]
    # Before the UI's catch-all, and only on the UI's name: a build's name never has it.
    assert inner.index(shell) < len(inner) - 1
    build_route = next(r for r in server["routes"]
                       if r.get("match") == [{"host": ["main-7.acme.apps.example.com"]}])
    assert "8765" not in str(build_route)
