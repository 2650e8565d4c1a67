"""What the proxy must route: the builds that have, or are about to have, a server."""

from __future__ import annotations

from appliance.store.states import BuildState

# Builds whose name answers something: a server (running), a page (stopped), or a
# maintenance page while their branch's next build gets ready.
ROUTED_STATES = (BuildState.QUEUED, BuildState.PREPARING, BuildState.INSTALLING,
                 BuildState.TESTING, BuildState.STARTING, BuildState.RUNNING,
                 BuildState.STOPPED)


def routed_builds(conn) -> list[dict]:
    """Every build in one of ROUTED_STATES with its project's and branch's names, by
    project, branch and build id."""
    return conn.execute(
        """SELECT b.id, b.state, b.host_port, b.database, b.branch_id, b.trigger, b.asleep,
                  br.name AS branch, br.stage, p.name AS project, p.id AS project_id
           FROM builds b JOIN branches br ON br.id = b.branch_id
           JOIN projects p ON p.id = b.project_id
           WHERE b.state = ANY(%s)
           ORDER BY p.name, br.name, b.id""",
        ([state.value for state in ROUTED_STATES],)).fetchall()
