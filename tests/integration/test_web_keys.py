"""The SSH keys page: each signed-in user adds, sees and removes their own keys only;
refusals come back to the page with their reason and change nothing."""

from __future__ import annotations

import html
import subprocess
from pathlib import Path

import pytest

from appliance.store import ssh_keys
from appliance.store import users as store_users
from tests.helpers_web import flashes, post


@pytest.fixture(scope="module")
def public_keys(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("keys")
    found = {}
    for name in ("laptop", "desk"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ada@{name}",
                        "-f", str(folder / name)], check=True)
        found[name] = (folder / f"{name}.pub").read_text()
    found["private"] = (Path(folder) / "laptop").read_text()
    return found


def keys_of(db, name: str) -> list[str]:
    with db.transaction() as conn:
        user = store_users.user_by_name(conn, name)
        return [row["name"] for row in ssh_keys.of_user(conn, user["id"])]


def test_a_user_adds_a_key_and_sees_its_fingerprint_and_their_projects_remote(
        client_as, db, public_keys):
    client = client_as("member")
    response = post(client, "/account/keys", key=public_keys["laptop"], name="")
    assert response.status_code == 303 and response.headers["Location"] == "/account/keys"
    assert keys_of(db, "member") == ["ada@laptop"]
    page = client.get("/account/keys").get_data(as_text=True)
    fingerprint = ssh_keys.parse(public_keys["laptop"]).fingerprint
    assert fingerprint in page
    assert any(f"Key 'ada@laptop' added: {fingerprint}." == f for f in flashes(page))
    assert "git remote add appliance ssh://appliance@127.0.0.1/acme.git" in html.unescape(page)


@pytest.mark.parametrize("which, reason", [
    ("private", "this is a private key"),
    ("garbage", "not an OpenSSH public key"),
])
def test_a_refused_key_comes_back_with_its_reason_and_nothing_is_added(
        client_as, db, public_keys, which, reason):
    client = client_as("member")
    text = public_keys.get(which, "hello there")
    response = post(client, "/account/keys", key=text, name="mine")
    assert response.headers["Location"] == "/account/keys"
    page = client.get("/account/keys").get_data(as_text=True)
    assert any(reason in flash for flash in flashes(page)), flashes(page)
    assert keys_of(db, "member") == []


def test_a_key_registered_by_someone_else_is_refused_without_naming_them(
        client_as, db, public_keys):
    post(client_as("owner"), "/account/keys", key=public_keys["desk"], name="desk")
    client = client_as("member")
    post(client, "/account/keys", key=public_keys["desk"], name="desk")
    page = client.get("/account/keys").get_data(as_text=True)
    assert flashes(page) == ["this key is already registered to another account: each "
                             "person needs a key of their own"]
    assert keys_of(db, "member") == [] and keys_of(db, "owner") == ["desk"]


def test_a_user_removes_their_key_but_not_someone_elses(client_as, db, public_keys):
    owner, member = client_as("owner"), client_as("member")
    post(owner, "/account/keys", key=public_keys["desk"], name="desk")
    with db.transaction() as conn:
        (key_id,) = [row["id"] for row in ssh_keys.of_user(
            conn, store_users.user_by_name(conn, "owner")["id"])]
    assert post(member, f"/account/keys/{key_id}/remove").status_code == 404
    assert keys_of(db, "owner") == ["desk"]
    assert "desk" not in member.get("/account/keys").get_data(as_text=True)
    assert post(owner, f"/account/keys/{key_id}/remove").status_code == 303
    assert keys_of(db, "owner") == []


def test_the_page_asks_to_sign_in_and_refuses_a_form_without_its_token(app, db, people,
                                                                       public_keys):
    anonymous = app.test_client()
    assert anonymous.get("/account/keys").status_code == 302
    assert anonymous.post("/account/keys", data={"key": public_keys["laptop"]}).status_code == 302
    assert keys_of(db, "member") == []


def test_the_project_page_shows_the_ssh_remote_from_the_ssh_settings(client_as, config):
    config.ssh.host, config.ssh.port, config.ssh.user = "git.example.com", 2222, "git"
    page = client_as("member").get("/projects/acme").get_data(as_text=True)
    assert "ssh://git@git.example.com:2222/acme.git" in page
    assert 'href="/account/keys"' in page
