"""The appliance admins' pages through Flask's test client, against the real state
database and PostgreSQL (project roles are made and renamed for real): creating a
project and inviting a user in the browser's forms, renaming only while it is safe,
archiving, the users' states, disk use; and a 404 on every admin page for anyone else.
"""

from __future__ import annotations

import os
import re

import pytest

from appliance import layout
from appliance.jobs import disk_use, project_admin, push
from appliance.jobs import projects as project_jobs
from appliance.jobs import queue
from appliance.services import Services
from appliance.store import projects as store_projects
from appliance.store import users as store_users
from appliance.errors import UserError
from tests.helpers_web import flashes, login, post
from tests.host import run_prefix

NEW_PASSWORD = "a tidy sloth in winter"


@pytest.fixture
def config(config):
    # Project roles this run makes are swept at its end (tests/host.py).
    config.database.role_prefix = config.database.db_prefix = run_prefix()
    return config


@pytest.fixture
def svc(config, db):
    return Services(config, db)


@pytest.fixture
def admin(client_as):
    return client_as("admin")


def project_row(db, name):
    with db.transaction() as conn:
        return conn.execute("SELECT * FROM projects WHERE name = %s", (name,)).fetchone()


def role_exists(db, role):
    with db.transaction() as conn:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()


# Projects

def test_an_admin_creates_a_project_in_the_browser_and_lands_on_its_page(
        admin, db, config, people):
    page = admin.get("/admin/projects").get_data(as_text=True)
    assert 'id="create-project-form"' in page and 'name="odoo_version"' in page
    response = post(admin, "/admin/projects", name="shop", odoo_version="18.0",
                    modules="sale_stock, website_sale sale_stock")
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    assert response.headers["Location"] == "/projects/shop"
    shop = project_row(db, "shop")
    assert shop["odoo_version"] == "18.0" and shop["modules"] == "sale_stock,website_sale"
    assert (config.paths.repos / "shop.git").is_dir()
    assert role_exists(db, shop["db_role"])
    assert "Project shop created" in flashes(admin.get("/projects/shop").get_data(as_text=True))[0]


@pytest.mark.parametrize("fields, reason", [
    ({"name": "Shop!", "odoo_version": "18.0"}, "invalid project name 'Shop!'"),
    ({"name": "acme", "odoo_version": "18.0"}, "project 'acme' already exists"),
    ({"name": "shop", "odoo_version": "9.0"}, "Odoo version '9.0' is not configured"),
    ({"name": "shop", "odoo_version": "18.0", "modules": "sale;rm -rf"}, "not a module name"),
])
def test_a_refused_project_form_comes_back_with_the_reason_and_makes_nothing(
        admin, db, config, people, fields, reason):
    response = post(admin, "/admin/projects", **fields)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/projects"
    page = admin.get("/admin/projects").get_data(as_text=True)
    assert reason in flashes(page)[0]
    assert f'value="{fields["name"]}"' in page  # what was typed is shown again
    assert project_row(db, "shop") is None and not (config.paths.repos / "shop.git").exists()


def test_a_project_is_renamed_with_its_repository_and_role_while_nothing_was_pushed(
        admin, db, svc, config, people):
    project_jobs.create(svc, "shop")
    old_role = project_row(db, "shop")["db_role"]
    response = post(admin, "/admin/projects/shop/rename", new_name="boutique")
    assert response.headers["Location"] == "/admin/projects/boutique"
    renamed = project_row(db, "boutique")
    assert renamed["db_role"] == run_prefix() + "boutique" and project_row(db, "shop") is None
    assert (config.paths.repos / "boutique.git").is_dir()
    assert not (config.paths.repos / "shop.git").exists()
    assert role_exists(db, renamed["db_role"]) and not role_exists(db, old_role)
    # The old name is free again, for a new project with a role of its own.
    project_jobs.create(svc, "shop")


def test_renaming_is_refused_with_the_reason_once_a_branch_exists(admin, db, people, work):
    response = post(admin, "/admin/projects/acme/rename", new_name="acme-two")
    assert response.headers["Location"] == "/admin/projects/acme"
    [shown] = flashes(admin.get("/admin/projects/acme").get_data(as_text=True))
    assert "acme cannot be renamed: it has 2 branches" in shown
    with db.transaction() as conn:
        conn.execute("DELETE FROM branches WHERE name = 'main'")
        conn.execute("INSERT INTO backups (project_id, kind, state) VALUES (%s, 'manual', "
                     "'failed')", (people["project"]["id"],))
    post(admin, "/admin/projects/acme/rename", new_name="acme-two")
    assert "it has 1 branch, 1 backup." in flashes(admin.get("/admin/projects/acme")
                                                   .get_data(as_text=True))[0]
    assert "git URL" in shown
    assert project_row(db, "acme") is not None and project_row(db, "acme-two") is None


def test_archiving_stops_servers_refuses_pushes_and_changes_and_hides_it_from_members(
        admin, client_as, db, people, make_build):
    running = make_build("main", state="running", result="success", host_port=18091)
    sleeping = make_build("feature", state="stopped", asleep=True)
    member = client_as("member")
    assert "acme" in member.get("/").get_data(as_text=True)

    response = post(admin, "/admin/projects/acme/archive")
    assert response.status_code == 303
    with db.transaction() as conn:
        tasks = conn.execute("SELECT kind, build_id FROM tasks ORDER BY build_id").fetchall()
        asleep = conn.execute("SELECT asleep FROM builds WHERE id = %s",
                              (sleeping["id"],)).fetchone()["asleep"]
    assert tasks == [{"kind": "stop_server", "build_id": running["id"]},
                     {"kind": "stop_server", "build_id": sleeping["id"]}]
    assert asleep is False  # a visit no longer wakes it
    # Hidden from its members' lists, not from the admin's.
    assert 'href="/projects/acme"' not in member.get("/").get_data(as_text=True)
    assert 'href="/projects/acme"' in admin.get("/").get_data(as_text=True)
    # Pushes and changes are refused, with the reason.
    acme = project_row(db, "acme")
    with pytest.raises(UserError, match="acme is archived"):
        push.check(acme, f"{'0' * 40} {'1' * 40} refs/heads/main\n")
    owner = client_as("owner")
    response = post(owner, "/projects/acme/settings", relay_port="25")
    assert response.headers["Location"] == "/projects/acme/settings"
    assert "acme is archived" in flashes(owner.get("/projects/acme/settings")
                                         .get_data(as_text=True))[0]
    # Back again.
    post(admin, "/admin/projects/acme/unarchive")
    assert project_row(db, "acme")["archived_at"] is None
    assert 'href="/projects/acme"' in member.get("/").get_data(as_text=True)
    push.check(project_row(db, "acme"), f"{'0' * 40} {'1' * 40} refs/heads/main\n")


def test_archiving_waits_for_builds_under_way(admin, db, people, make_build):
    queued = make_build("feature")
    post(admin, "/admin/projects/acme/archive")
    [shown] = flashes(admin.get("/admin/projects/acme").get_data(as_text=True))
    assert f"builds queued or under way (#{queued['id']})" in shown
    assert project_row(db, "acme")["archived_at"] is None


@pytest.mark.docker
def test_the_stop_an_archive_asks_for_leaves_the_build_stopped(
        admin, db, svc, people, make_build, docker_client):
    running = make_build("main", state="running", result="success", host_port=18092)
    project_admin.archive(svc, "acme", None)
    with db.transaction() as conn:
        task = conn.execute("SELECT * FROM tasks").fetchone()
    queue.run_task(svc, task)
    with db.transaction() as conn:
        state = conn.execute("SELECT state FROM builds WHERE id = %s",
                             (running["id"],)).fetchone()["state"]
    assert state == "stopped"


def test_disk_use_counts_each_inode_once_and_never_follows_a_link(
        admin, db, svc, config, people, make_build, tmp_path):
    project_jobs.create(svc, "shop")
    shop = project_row(db, "shop")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(os.urandom(1 << 20))
    data = config.paths.data_dir / "projects" / "shop" / "production" / "filestore"
    data.mkdir(parents=True)
    (data / "a").write_bytes(os.urandom(256 << 10))
    os.link(data / "a", data / "a-copy")      # a staging copy: hard links
    (data / "escape").symlink_to(outside)     # a container's link: not followed
    with db.transaction() as conn:
        conn.execute("""INSERT INTO backups (project_id, kind, state, dump_bytes, files_bytes,
                        bytes_added) VALUES (%s, 'daily', 'done', 1000, 2000, 700),
                        (%s, 'daily', 'done', 1500, 2500, 300)""", (shop["id"], shop["id"]))
    database = layout.production_database(config, "shop")
    svc.postgres.create_database(database, shop["db_role"])  # closed to others, as built
    try:
        use = disk_use.measure(svc, shop)
    finally:
        svc.postgres.drop_database(database)
    assert 256 << 10 <= use.data < 300 << 10
    assert use.repository > 0
    [(name, size)] = use.databases
    assert name == database and size > 1 << 20
    assert (use.backups_kept, use.backup_added, use.backup_latest) == (2, 1000, 4000)
    page = admin.get("/admin/projects/shop").get_data(as_text=True)
    assert "Filestores and sessions" in page and "2 kept" in page


# Users

def test_an_admin_invites_a_user_who_sets_a_password_through_the_link_once(
        admin, app, db, people):
    page = admin.get("/admin/users").get_data(as_text=True)
    assert 'id="invite-user-form"' in page
    response = post(admin, "/admin/users", name="ada")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    link = re.search(r'id="password-link-url"[^>]*value="([^"]+)"',
                     response.get_data(as_text=True)).group(1)
    path = "/" + link.split("/", 3)[3]
    with db.transaction() as conn:
        assert store_users.user_by_name(conn, "ada")["password_hash"] == store_users.NO_PASSWORD
    visitor = app.test_client()
    assert post(visitor, path, new_password=NEW_PASSWORD,
                confirm_password=NEW_PASSWORD).status_code == 303
    assert login(app.test_client(), "ada", NEW_PASSWORD).status_code == 302
    assert visitor.get(path).status_code == 410  # used once
    assert "invited" not in admin.get("/admin/users").get_data(as_text=True).split(
        'id="user-ada"')[1].split("</tr>")[0]


def test_an_admin_disables_enables_and_resets_a_user(admin, app, db, people):
    member = app.test_client()
    assert login(member, "member").status_code == 302
    post(admin, "/admin/users/member/disable")
    assert member.get("/").status_code == 302  # signed out
    assert login(app.test_client(), "member").status_code != 302
    post(admin, "/admin/users/member/enable")
    assert login(app.test_client(), "member").status_code == 302
    response = post(admin, "/admin/users/member/password")
    assert "Password link for member" in response.get_data(as_text=True)


def test_the_last_admin_is_never_demoted_nor_disabled(admin, db, people):
    for path in ("/admin/users/admin/admin", "/admin/users/admin/disable"):
        response = post(admin, path, admin="0")
        assert response.headers["Location"] == "/admin/users"
        [shown] = flashes(admin.get("/admin/users").get_data(as_text=True))
        assert "only enabled appliance admin" in shown
    post(admin, "/admin/users/owner/admin", admin="1")
    post(admin, "/admin/users/admin/admin", admin="0")
    with db.transaction() as conn:
        assert not store_users.user_by_name(conn, "admin")["is_admin"]
        assert store_users.user_by_name(conn, "owner")["is_admin"]


# Only for appliance admins

def admin_urls(app) -> list[tuple[str, str]]:
    args = {"name": "acme", "user_name": "member"}
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", args[arg])
        found += [(method, path) for method in ("GET", "POST") if method in rule.methods]
    return found


def test_anyone_but_an_appliance_admin_gets_404_on_every_admin_page(app, client_as, db, people):
    urls = admin_urls(app)
    assert len(urls) >= 12
    for name in ("owner", "member", "outsider"):
        client = client_as(name)
        for method, path in urls:
            response = client.get(path) if method == "GET" else post(client, path, admin="1",
                                                                      new_name="x", name="y")
            assert response.status_code == 404, (name, method, path)
    anonymous = app.test_client()
    for method, path in urls:
        assert anonymous.get(path).status_code in (302, 405)
    with db.transaction() as conn:
        assert not store_users.user_by_name(conn, "member")["is_admin"]
        assert store_projects.get_project(conn, "acme")["archived_at"] is None
