"""containers.serve, the one way a build's server is started, waited for and marked
running: a stopped build whose server cannot start is stopped again, with nothing left."""

from __future__ import annotations

import pytest

from appliance.errors import DockerError
from appliance.jobs import containers
from appliance.jobs.steps import BuildFailed
from appliance.services import Services
from appliance.store import builds as store_builds
from appliance.store import projects as store_projects
from appliance.store.states import BuildState

pytestmark = pytest.mark.docker


@pytest.fixture
def svc(config, db, docker_client):
    services = Services(config, db)
    yield services
    for info in services.docker.find():
        services.docker.remove(info.id)
    services.docker.remove_network("serve-test")


def stopped_build(svc, image: str) -> tuple[dict, dict]:
    """A development build that ran and was stopped, recorded with `image`."""
    with svc.db.transaction() as conn:
        project = store_projects.create_project(conn, "serve-test", "18.0", "appl_")
        branch, _ = store_projects.ensure_branch(conn, project, "feature")
        build = store_builds.enqueue(conn, project=project, branch=branch, commit="0" * 40)
        for state in (BuildState.PREPARING, BuildState.STARTING, BuildState.RUNNING,
                      BuildState.STOPPED):
            store_builds.set_state(conn, build["id"], state)
        store_builds.update(conn, build["id"], image=image, database="appl_serve_test_1",
                            modules="shop", addons_dirs=".")
        build = store_builds.get_build(conn, build["id"])
    containers.prepare_folders(svc, build["id"]).src.mkdir()
    return project, build


def test_a_stopped_build_whose_server_cannot_start_is_stopped_again_with_no_container(svc):
    project, build = stopped_build(svc, "appliance/no-such-image:missing")
    setup = containers.stored_setup(svc, project, build)
    with pytest.raises(DockerError, match="no-such-image"):
        containers.serve(svc, setup)
    with svc.db.transaction() as conn:
        after = store_builds.get_build(conn, build["id"])
    assert (after["state"], after["host_port"]) == ("stopped", None)
    assert svc.docker.find(build_id=build["id"]) == []


def test_a_server_that_exits_before_answering_is_removed_and_the_build_stopped_again(svc):
    # The bare Debian base has no Python: the server's command exits at once (before
    # Docker reports its port, or before it answers).
    if svc.docker.client.images.list(name=svc.config.runtime.base_image) == []:
        pytest.skip(f"no {svc.config.runtime.base_image} image: run `make test` to set up")
    project, build = stopped_build(svc, svc.config.runtime.base_image)
    with pytest.raises(BuildFailed, match=r"^the server (started but Docker published no "
                                          r"port|stopped before answering /web/health)"):
        containers.serve(svc, containers.stored_setup(svc, project, build))
    with svc.db.transaction() as conn:
        assert store_builds.get_build(conn, build["id"])["state"] == "stopped"
    assert svc.docker.find(build_id=build["id"]) == []
