"""Room on the disk for uploads, through Flask's test client against a real state
database: an upload is refused (507, with the reason) when it would not fit in the free
space, less the appliance's margin, besides what the unfinished uploads still bring.

The free space is read from a disk as big as the margin and 10,000 bytes, less the
bytes already written in the uploads folder: the disk as the uploads fill it.
"""

from __future__ import annotations

import pytest

from appliance.jobs import uploads as upload_jobs
from tests.helpers_web import csrf

UPLOADS = "/projects/acme/uploads"
ROOM = 10_000


@pytest.fixture
def small_disk(monkeypatch, make_build, config):
    make_build("main", state="running")

    def free_bytes(cfg):
        top = upload_jobs.uploads_dir(cfg)
        written = sum(p.stat().st_size for p in top.rglob("*") if p.is_file()) \
            if top.exists() else 0
        return upload_jobs.ROOM_MARGIN_BYTES + ROOM - written
    monkeypatch.setattr(upload_jobs, "free_bytes", free_bytes)


def start_upload(client, size: int):
    return client.post(UPLOADS, json={"name": "shop.sql.gz", "size": size},
                       headers={"X-CSRF-Token": csrf(client)})


def send(client, upload: dict, offset: int, data: bytes):
    return client.post(f"{UPLOADS}/{upload['id']}/chunks?offset={offset}", data=data,
                       content_type="application/octet-stream",
                       headers={"X-CSRF-Token": csrf(client)})


def test_an_upload_the_disk_cannot_take_besides_the_unfinished_ones_is_refused_507(
        client_as, small_disk):
    client = client_as("owner")
    first = start_upload(client, 6000)
    assert first.status_code == 201
    refused = start_upload(client, 5000)  # 6,000 promised + 5,000 > 10,000
    assert refused.status_code == 507
    assert "not enough free disk" in refused.get_json()["error"]
    assert "uploads under way" in refused.get_json()["error"]
    assert send(client, first.get_json(), 0, b"x" * 3000).status_code == 200
    assert start_upload(client, 5000).status_code == 507  # 3,000 written, 3,000 to come
    assert start_upload(client, 4000).status_code == 201  # just fits


def test_a_finished_upload_counts_once_as_what_it_wrote(client_as, small_disk):
    client = client_as("owner")
    first = start_upload(client, 6000).get_json()
    assert send(client, first, 0, b"x" * 6000).status_code == 200
    assert start_upload(client, 4001).status_code == 507
    assert start_upload(client, 4000).status_code == 201
