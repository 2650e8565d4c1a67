"""The stand-in Odoo's README against the stand-in itself: every subcommand it runs is
described under "What it honours", and each `db` subcommand is either described there
or said not to be provided. The stand-in is run (for `db`'s help and refusals) under
Debian's python3, which has python3-psycopg2; no database is needed."""

import re
import shutil
import subprocess

import pytest

from tests.host import STUB_ODOO

README = STUB_ODOO / "README.md"
PYTHON = shutil.which("python3", path="/usr/bin")


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start:end if end != -1 else None].split())


def stub(*args: str) -> subprocess.CompletedProcess:
    if PYTHON is None:
        pytest.skip("no python3 in /usr/bin to run the stand-in")
    return subprocess.run([PYTHON, str(STUB_ODOO / "odoo-bin"), *args], capture_output=True,
                          text=True, timeout=60)


def test_every_subcommand_the_stand_in_runs_is_described_as_honoured():
    source = (STUB_ODOO / "odoo" / "cli" / "command.py").read_text()
    commands = re.findall(r'^\s+"(\w+)": "odoo\.cli\.\w+",$', source, re.M)
    assert "db" in commands
    honoured = section("What it honours")
    for name in commands:
        if name != "server":  # the usage at the top of the README
            assert f"`odoo-bin {name}" in honoured, name
    differs = section("Where it differs from real Odoo")
    refused = differs[differs.index("Subcommands other than"):]
    refused = refused[:refused.index("not supported by")]
    examples = refused[refused.index("("):]  # the subcommands given as refused
    assert not [name for name in commands if f"`{name}`" in examples]


def test_each_db_subcommand_is_described_or_said_not_to_be_provided():
    usage = stub("db", "--help")
    assert usage.returncode == 0, usage.stderr
    names = re.search(r"\{([a-z,]+)\}", usage.stdout).group(1).split(",")
    honoured, differs = section("What it honours"), section("Where it differs from real Odoo")
    for name in names:
        refusal = stub("db", name)
        if "not supported by this stand-in" in refusal.stderr:
            assert refusal.returncode == 2
            assert f"`db {name}`" in differs and f"db {name}" not in honoured, name
        else:
            assert f"`db {name}`" in honoured, name
