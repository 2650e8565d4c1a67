"""The long-lived objects the daemon, the CLI and the web app share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from appliance.config import Config
from appliance.store.db import Database


@dataclass
class Services:
    config: Config
    db: Database
    extra: dict = field(default_factory=dict)

    @cached_property
    def instance(self) -> str:
        """This appliance's id, kept in its state database (labels its containers)."""
        with self.db.transaction() as conn:
            return conn.execute("SELECT id FROM appliance_instance").fetchone()["id"]

    @cached_property
    def docker(self):
        from appliance.runtime.docker import DockerRuntime
        return DockerRuntime(self.config.runtime, self.instance)

    @cached_property
    def postgres(self):
        from appliance.runtime.postgres import Postgres
        return Postgres(self.config.database)
