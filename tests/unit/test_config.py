"""The config: defaults, overrides, errors, and the shipped file documents every key."""

import dataclasses
import re
from pathlib import Path

import pytest

from appliance import config as config_mod
from appliance.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "appliance.toml"


def test_defaults_load_when_the_file_does_not_exist(tmp_path):
    cfg = config_mod.load(tmp_path / "missing.toml", env={})
    assert cfg.workers.builds == 2
    assert cfg.odoo.versions["18.0"].ref == "18.0"


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[workers]\nbuilds = 3\n[runtime]\ncpus = 0.5\n')
    cfg = config_mod.load(path, env={"APPLIANCE_WORKERS_BUILDS": "5"})
    assert cfg.workers.builds == 5
    assert cfg.runtime.cpus == 0.5


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    path = tmp_path / "a.toml"
    path.write_text(f'[database]\npassword_file = "{secret}"\n')
    assert config_mod.load(path, env={}).database.password == "s3cret"
    env = {"APPLIANCE_DATABASE_PASSWORD_FILE": str(secret)}
    assert config_mod.load(tmp_path / "none.toml", env=env).database.password == "s3cret"


def test_an_unknown_key_is_a_clear_error(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[workers]\nbuildz = 3\n')
    with pytest.raises(ConfigError, match=r"unknown key \[workers\] buildz"):
        config_mod.load(path, env={})


def test_a_wrong_type_is_a_clear_error(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[workers]\nbuilds = "many"\n')
    with pytest.raises(ConfigError, match=r"\[workers\] builds"):
        config_mod.load(path, env={})


def test_the_shipped_config_loads_and_documents_every_key():
    cfg = config_mod.load(SHIPPED, env={})
    text = SHIPPED.read_text()
    for section, cls in config_mod.SECTIONS.items():
        assert f"[{section}]" in text
        for field in dataclasses.fields(cls):
            pattern = rf"(?m)^#[^\n]*\n(#?\s*){field.name}(_file)? ="
            assert re.search(pattern, text), f"[{section}] {field.name} is not documented"
    assert cfg.odoo.default_version in cfg.odoo.versions
