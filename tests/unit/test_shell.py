"""The shell's pure parts: control requests, the WebSocket's addresses, recordings, the
image's tools, odoo-update's plan on production and the [shell] config."""

from __future__ import annotations

import json

import pytest

from appliance import config as config_mod
from appliance.errors import ConfigError
from appliance.jobs.plan import make_plan
from appliance.runtime import image_recipes
from appliance.runtime.odoo import Manifest
from appliance.shell import cast, control
from appliance.shell.websocket import browser_url, origin_of


def test_a_control_request_names_an_action_a_token_and_module_names_only():
    request = control.parse_request(
        b'{"action": "update", "modules": ["sale", "sale", "stock_2"], "token": "t"}')
    assert request == control.Request("update", ("sale", "stock_2"), "t")
    assert control.parse_request(b'{"action": "restart", "token": "t"}').modules == ()


@pytest.mark.parametrize("line, reason", [
    (b'{"action": "update", "modules": [], "token": "t"}', "name the modules"),
    (b'{"action": "update", "modules": ["a b"], "token": "t"}', "not a module name"),
    (b'{"action": "update", "modules": ["x/../y"], "token": "t"}', "not a module name"),
    (b'{"action": "update", "modules": [1], "token": "t"}', "list of names"),
    (b'{"action": "update", "modules": "sale", "token": "t"}', "list of names"),
    (b'{"action": "restart"}', "no terminal token"),
    (b'{"action": "restart", "token": ""}', "no terminal token"),
    (b'{"action": "restart", "token": 5}', "no terminal token"),
    (b'{"action": "shutdown", "token": "t"}', "unknown action"),
    (b'"restart"', "a JSON object"),
    (b"restart", "one line of JSON"),
    (b"x" * 5000, "at most 4096 bytes"),
])
def test_a_bad_control_request_is_refused_with_what_is_wrong(line, reason):
    with pytest.raises(control.BadRequest, match=reason):
        control.parse_request(line)


def test_too_many_modules_at_once_are_refused():
    modules = json.dumps([f"m{n}" for n in range(control.MAX_MODULES + 1)])
    with pytest.raises(control.BadRequest, match="at most"):
        control.parse_request(f'{{"action": "update", "modules": {modules}, "token": "t"}}'
                              .encode())


def test_an_origin_is_scheme_host_and_a_port_that_is_not_the_default():
    assert origin_of("https://Apps.Example.com/") == "https://apps.example.com"
    assert origin_of("https://apps.example.com:443/x") == "https://apps.example.com"
    assert origin_of("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert origin_of("https://apps.example.com:8443") == "https://apps.example.com:8443"


def test_the_page_connects_through_the_ui_s_name_or_to_the_loopback_port():
    cfg = config_mod.Config()
    cfg.shell.listen = "127.0.0.1:45678"
    cfg.server.public_url = "http://127.0.0.1:8080"
    assert browser_url(cfg) == "ws://127.0.0.1:45678/-/shell/"
    cfg.server.public_url = "https://apps.example.com"
    assert browser_url(cfg) == "wss://apps.example.com/-/shell/"


def test_the_shell_listens_on_loopback_only(tmp_path):
    path = tmp_path / "a.toml"
    for listen in ("0.0.0.0:9000", "10.0.0.5:9000", "127.0.0.1", "127.0.0.1:x"):
        path.write_text(f'[shell]\nlisten = "{listen}"\n')
        with pytest.raises(ConfigError, match=r"\[shell\] listen"):
            config_mod.load(path, env={})
    path.write_text('[shell]\nlisten = "127.0.0.1:9000"\nidle_minutes = 5\n')
    cfg = config_mod.load(path, env={})
    assert cfg.shell.listen == "127.0.0.1:9000" and cfg.shell.idle_minutes == 5.0


def test_a_recording_is_asciicast_v2_and_keeps_characters_split_across_reads(tmp_path):
    cfg = config_mod.Config()
    cfg.paths.data_dir = tmp_path
    recorder = cast.Recorder.create(cfg, 7, 24, 80, "acme/main#3")
    euro = "€".encode()
    recorder.output(b"price: " + euro[:1])
    recorder.output(euro[1:] + b"\r\n")
    recorder.resize(40, 120)
    recorder.close()
    lines = [json.loads(line) for line in cast.path(cfg, 7).read_text().splitlines()]
    assert lines[0]["version"] == 2 and (lines[0]["width"], lines[0]["height"]) == (80, 24)
    assert "".join(e[2] for e in lines[1:] if e[1] == "o") == "price: €\r\n"
    assert lines[-1][1:] == ["r", "120x40"]
    assert all(isinstance(e[0], float) for e in lines[1:])
    assert oct(cast.path(cfg, 7).stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):  # a session's recording is never written twice
        cast.Recorder.create(cfg, 7, 24, 80, "again")


def test_a_recording_stops_at_its_size_limit_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(cast, "MAX_BYTES", 200)
    cfg = config_mod.Config()
    cfg.paths.data_dir = tmp_path
    recorder = cast.Recorder.create(cfg, 1, 24, 80, "x")
    for _ in range(10):
        recorder.output(b"y" * 50)
    recorder.close()
    text = cast.path(cfg, 1).read_text()
    assert "recording stopped" in text and text.count("y") < 10 * 50


def test_the_runtime_image_carries_the_terminal_s_tools():
    tools = image_recipes.shell_tools()
    assert set(tools) == {"appliance-bashrc", "appliance-control", "appliance-pg-wrapper"}
    assert b"PGPASSWORD" in tools["appliance-pg-wrapper"]  # given to psql alone
    dockerfile = image_recipes.runtime_dockerfile(config_mod.RuntimeConfig(), ["python3"], b"",
                                                  tools)
    for name in ("psql", "odoo-update", "odoo-restart", "odoo-bin"):
        assert f"/usr/local/bin/{name}" in dockerfile
    assert "ln -s /var/log/odoo /var/lib/odoo/logs" in dockerfile
    assert "ln -s /mnt/src/user /var/lib/odoo/src/user" in dockerfile
    assert {"less", "lnav", "postgresql-client"} <= set(image_recipes.SHELL_PACKAGES)


def test_odoo_update_on_production_updates_installed_modules_whatever_their_version():
    manifests = [Manifest(name="shop", path="shop", version="1.0", depends=[],
                          installable=True, data={})]
    installed = {"shop": "18.0.1.0", "sale": "18.0.1.2"}
    plan = make_plan(installed, manifests, ["shop"], "18.0", force=["sale", "missing"])
    assert plan.deploy == "full"
    assert plan.update["sale"] == ("18.0.1.2", "18.0.1.2")
    assert "update sale (odoo-update)" in plan.summary
    assert any("missing: not installed" in note for note in plan.notes)
    assert make_plan(installed, manifests, ["shop"], "18.0").deploy == "fast"
