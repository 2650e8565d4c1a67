"""A full deploy puts its snapshot back only if it took one: a snapshot step that fails
leaves production as it was, whatever else holds the snapshot's name."""

from __future__ import annotations

import pytest

from appliance import layout
from tests.integration.harness import sql
from tests.integration.test_stages import app, live, production  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker


def test_a_snapshot_that_cannot_be_taken_leaves_production_and_its_server_as_they_were(
        app, live):  # noqa: F811
    work, first = live
    db, _ = production(app)
    # A database already named like the next deploy's snapshot: the copy is refused.
    stale = layout.production_snapshot(app.config, "shop", first["id"] + 1).database
    sql("appliance", f'CREATE DATABASE "{stale}"')
    try:
        work.commit("v2")
        build = work.push()
        assert build["state"] == "failed" and "already exists" in build["reason"], build
        assert sql(db, "SELECT name FROM shop_order") == [("before update",)]
        assert app.wait_build(first["id"])["state"] == "running"
    finally:
        sql("appliance", f'DROP DATABASE IF EXISTS "{stale}"')
