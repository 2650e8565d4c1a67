"""Odoo's bytecode, compiled once per version into a cache no build can write.

Python writes a module's compiled form beside it, or under PYTHONPYCACHEPREFIX; the Odoo
source is mounted read-only, so without a cache every process compiles Odoo again. A
cache that builds could write would let one project plant bytecode that another
project's Odoo then runs (a `.pyc` whose header matches the source's mtime and size is
trusted as it is). So the cache is written by one container that runs nothing but
`compileall` over the configured Odoo source, in the runtime image (Debian packages the
appliance chose, none of a branch's requirements), and build containers mount it
read-only. A branch's own modules are compiled in memory each time (they are small).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from appliance.runtime import buildfs
from appliance.runtime.docker import LABEL_ROLE

log = logging.getLogger(__name__)

_lock = threading.Lock()
_compiled: set[tuple[str, str]] = set()
# Compiling real Odoo's ~3,000 files takes about a minute on two cores.
COMPILE_TIMEOUT_SECONDS = 900
CACHE_MODE = 0o755


def cache_dir(svc, version: str) -> Path:
    return svc.config.paths.odoo / "bytecode" / version


def ensure(svc, version: str, source: Path, image: str) -> Path:
    """Compile `source` (Odoo `version`) with `image`'s Python, once per process: later
    runs find the files up to date and only check them."""
    from appliance.jobs import containers
    cache = cache_dir(svc, version)
    with _lock:
        if (version, image) in _compiled:
            return cache
        cache.parent.mkdir(parents=True, exist_ok=True)
        buildfs.make_folder(cache, svc.config.runtime.uid, CACHE_MODE)
        name = f"appl-{svc.instance}-bytecode-{version}".replace(".", "-")
        info = svc.docker.start(
            name=name, image=image,
            command=["python3", "-m", "compileall", "-q", "-j", "0", containers.ODOO_DIR],
            labels={LABEL_ROLE: "task"},
            mounts=[containers.Mount(str(source), containers.ODOO_DIR),
                    containers.Mount(str(cache), containers.PYCACHE_DIR, read_only=False)],
            env={}, network="none", tmpfs=containers.TMPFS)
        try:
            output: list[str] = []
            code = svc.docker.follow_to_end(info.id, COMPILE_TIMEOUT_SECONDS, output.append)
        finally:
            svc.docker.remove(info.id)
        if code != 0:
            # Not fatal: builds then compile Odoo in memory, as without a cache.
            log.warning("compiling Odoo %s's bytecode exited with %s: %s", version, code,
                        "".join(output)[-2000:])
        else:
            log.info("Odoo %s's bytecode is compiled in %s", version, cache)
        _compiled.add((version, image))
    return cache
