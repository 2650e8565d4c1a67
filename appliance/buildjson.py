"""The one JSON shape of a build, shared by the API (`/api/builds/<id>`,
`/api/projects/<name>/builds`) and the CLI (`appliance build list --json`).

    id, project, branch, stage        which build, of what
    commit, message, author           the revision built
    state, result, reason             where it is, green/yellow/red and why
    trigger, deploy, plan             why it was made, what its deploy did (production)
    source                            where a restore or import takes its data from:
                                      {"backup": id} or {"upload": file name} (never a
                                      path on the server), else null
    failed_tests                      names of the failing tests
    url                               its running Odoo, or null
    page                              its page in the UI
    steps                             [{name, state, seconds}] in order
    timings                           {step name: seconds} of the steps that took any
    created_at, started_at, finished_at   ISO 8601, or null
"""

from __future__ import annotations

import datetime as dt

from appliance import layout
from appliance.config import Config


def build_json(cfg: Config, build: dict, steps: list[dict]) -> dict:
    """A build row (with its `project` and `branch` names, as store.builds reads them)
    and its steps, as JSON."""
    return {
        "id": build["id"], "project": build["project"], "branch": build["branch"],
        "stage": build["stage"], "commit": build["commit"], "message": build["commit_message"],
        "author": build["author"], "state": build["state"], "result": build["result"],
        "reason": build["reason"], "trigger": build["trigger"], "deploy": build["deploy"],
        "plan": build["plan"], "source": source_json(build.get("source")),
        "failed_tests": [test["name"] for test in build["failed_tests"] or []],
        "url": layout.build_url(cfg, build), "page": layout.build_page(cfg, build["id"]),
        "steps": [{"name": s["name"], "state": s["state"], "seconds": s["seconds"]}
                  for s in steps],
        "timings": {s["name"]: s["seconds"] for s in steps if s["seconds"] is not None},
        "created_at": _iso(build["created_at"]), "started_at": _iso(build["started_at"]),
        "finished_at": _iso(build["finished_at"]),
    }


def source_json(source: dict | None) -> dict | None:
    """What people may see of a build's source: the backup, or the uploaded file's name."""
    if not source:
        return None
    if "backup" in source:
        return {"backup": source["backup"]}
    return {"upload": source.get("name") or "upload"}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
