"""The deploy plan: what updating a database to a new revision must do, and why.

A pure function of the versions installed in the database and the branch's manifests,
the same for production (which plans before it stops anything) and staging (which
updates its copy). Versions compare as Odoo records them (`1.0` in a manifest is
`18.0.1.0`), trailing zeros aside (`18.0.1.0` is `18.0.1.0.0`).

- no database yet: "first", every module installed (no demo data);
- a module new to the database: installed (`-i`);
- a module whose version went up: updated (`-u`), with both versions shown;
- neither: "fast", the server restarts on the new code;
- a version that went down, or a module the branch no longer has: left as it is
  (Odoo has no downgrade; uninstalling is a person's decision), the first noted;
- a manifest version that is not numbers and dots: refused (BadVersion), nothing done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from appliance.errors import UserError
from appliance.runtime import odoo

FIRST_SUMMARY = "no production database yet: install without demo data"
FAST_SUMMARY = "no module version went up: restart on the new code, no -u"
VERSION = re.compile(r"^\d+(\.\d+)*$")


class BadVersion(UserError):
    """A manifest's version cannot be compared."""


@dataclass(frozen=True)
class Plan:
    deploy: str  # "first" (no database yet), "fast" (code only) or "full" (-u / -i)
    summary: str
    update: dict[str, tuple[str, str]] = field(default_factory=dict)  # module: (old, new)
    install: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what is left as it is, and why

    def as_json(self) -> dict:
        """What the build's `plan` column keeps and its page shows."""
        return {"deploy": self.deploy, "summary": self.summary,
                "update": {m: list(v) for m, v in self.update.items()},
                "install": list(self.install), "reasons": list(self.notes)}


def version_key(version: str) -> tuple[int, ...] | None:
    """The version as numbers to compare, trailing zeros dropped; None if it is not
    numbers separated by dots."""
    if not VERSION.match(version):
        return None
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def make_plan(installed: dict[str, str] | None, manifests: Iterable[odoo.Manifest],
              modules: Iterable[str], series: str, force: Iterable[str] = ()) -> Plan:
    """The plan for a database with `installed` versions ({module: version}; None when
    there is no database yet) and a branch with `manifests`, of which `modules` are
    the build's. `series` is the Odoo version (18.0) manifest versions are read in.
    `force`: installed modules to update whatever their versions (odoo-update asked
    from a production terminal)."""
    wanted = list(modules)
    if installed is None:
        return Plan("first", FIRST_SUMMARY, install=tuple(wanted))
    update, install, notes = {}, [], []
    for manifest in manifests:
        if manifest.name not in wanted:
            continue
        new = odoo.full_version(manifest.version, series)
        new_key = version_key(new)
        if new_key is None:
            raise BadVersion(f"module {manifest.name}: version {manifest.version!r} in its "
                             "__manifest__.py is not numbers separated by dots (like 1.0 "
                             f"or {series}.1.0.0): nothing was deployed")
        old = installed.get(manifest.name)
        if old is None:
            install.append(manifest.name)
        elif version_key(old) is None or new_key > version_key(old):
            update[manifest.name] = (old, new)
        elif new_key < version_key(old):
            notes.append(f"{manifest.name}: {old} is installed and the branch has {new}; "
                         "a version going down is not updated")
    forced = []
    for name in force:
        if name in update or name in install:
            continue
        if name in installed:
            update[name] = (installed[name], installed[name])
            forced.append(name)
        else:
            notes.append(f"{name}: not installed, so not updated (odoo-update asked for it)")
    if not update and not install:
        return Plan("fast", FAST_SUMMARY, notes=tuple(notes))
    parts = [f"update {m} {old} -> {new}" if m not in forced else f"update {m} (odoo-update)"
             for m, (old, new) in sorted(update.items())]
    parts += [f"install {m} (new)" for m in install]
    return Plan("full", "; ".join(parts), update=update, install=tuple(install),
                notes=tuple(notes))
