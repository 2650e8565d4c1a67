"""Custom domains on a project's settings page: who may add, choose the primary and
remove them, what is refused, and what the page says of DNS."""

import html

import pytest

from appliance.store import domains as domains_store
from appliance.store import projects as store_projects
from tests.helpers_web import flashes, post


@pytest.fixture
def branches(db, people, config):
    config.proxy.base_domain = "apps.example.com"
    with db.transaction() as conn:
        project = people["project"]
        main, _ = store_projects.ensure_branch(conn, project, "main")
        conn.execute("UPDATE branches SET stage = 'production' WHERE id = %s", (main["id"],))
        store_projects.ensure_branch(conn, project, "feature")
    return project


def names(db, project) -> list[tuple[str, str, bool]]:
    with db.transaction() as conn:
        return [(d["name"], d["branch"], d["is_primary"])
                for d in domains_store.of_project(conn, project)]


def test_a_project_admin_adds_domains_the_first_is_primary_and_can_change_it(
        client_as, db, branches):
    client = client_as("owner")
    # .test names never resolve (RFC 2606), wherever the tests run.
    for name in ("Shop.Example.test.", "example.test"):
        response = post(client, "/projects/acme/domains", domain=name, branch="main")
        assert response.status_code == 303
    assert names(db, branches) == [("shop.example.test", "main", True),
                                   ("example.test", "main", False)]
    post(client, "/projects/acme/domains/example.test/primary")
    assert ("example.test", "main", True) in names(db, branches)
    post(client, "/projects/acme/domains/example.test/remove")
    assert names(db, branches) == [("shop.example.test", "main", True)]
    page = client.get("/projects/acme/settings").get_data(as_text=True)
    assert "shop.example.test" in page and "does not resolve yet" in page


@pytest.mark.parametrize("domain, branch, error", [
    ("x.apps.example.com", "main", "is under the appliance's own domain"),
    ("10.1.2.3", "main", "is an address, not a domain name"),
    ("shop example.org", "main", "is not a domain name"),
    ("shop.example.org", "feature", "only production and staging branches"),
])
def test_a_bad_domain_is_refused_with_its_reason_and_nothing_is_added(
        client_as, db, branches, domain, branch, error):
    client = client_as("owner")
    response = post(client, "/projects/acme/domains", domain=domain, branch=branch)
    assert response.headers["Location"] == "/projects/acme/settings"
    page = client.get("/projects/acme/settings").get_data(as_text=True)
    assert any(error in flash for flash in flashes(page)), flashes(page)
    assert names(db, branches) == []


def test_a_domain_of_another_project_is_refused_without_naming_it(client_as, db, branches):
    with db.transaction() as conn:
        other = store_projects.create_project(conn, "other", "18.0", "appl_")
        prod, _ = store_projects.ensure_branch(conn, other, "main")
        conn.execute("UPDATE branches SET stage = 'production' WHERE id = %s", (prod["id"],))
        prod = store_projects.get_branch(conn, other, "main")
        domains_store.add(conn, other, prod, "taken.example.org", "apps.example.com")
    client = client_as("owner")
    post(client, "/projects/acme/domains", domain="taken.example.org", branch="main")
    page = client.get("/projects/acme/settings").get_data(as_text=True)
    assert [html.unescape(f) for f in flashes(page)] == [
        "taken.example.org is already a domain of another project"]


def test_a_developer_may_not_change_domains_and_an_outsider_gets_404(client_as, db, branches):
    assert post(client_as("member"), "/projects/acme/domains", domain="a.example.org",
                branch="main").status_code == 403
    assert post(client_as("outsider"), "/projects/acme/domains", domain="a.example.org",
                branch="main").status_code == 404
    assert names(db, branches) == []
