"""Odoo's bytecode, compiled once per version into a cache no build can write.

Python writes a module's compiled form beside it, or under PYTHONPYCACHEPREFIX; the Odoo
source is mounted read-only, so without a cache every process compiles Odoo again. A
cache that builds could write would let one project plant bytecode that another
project's Odoo then runs (a `.pyc` whose header matches the source's mtime and size is
trusted as it is). So the cache is written by one container that runs nothing but
`compileall` over the configured Odoo source, in the runtime image (Debian packages the
appliance chose, none of a branch's requirements), and build containers mount it
read-only. A branch's own modules are compiled in memory each time (they are small).

PYTHONPYCACHEPREFIX applies to every module, so the cache also holds the standard
library and Debian's Python packages of the runtime image: without them Python ignores
their own __pycache__ and compiles them at each start. Measured on an Odoo 18 tree with
Enterprise (13,000 files, 2 cores, loaded): a registry load of base takes 8.9 s with no
cache, 7.1 s with Odoo's files cached and 2.8 s with all three; compiling everything
once takes about 75 s. Packages a branch's requirements add are compiled in memory.
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
# Compiling an Odoo tree with Enterprise (13,000 files) takes about 45 s on two cores.
COMPILE_TIMEOUT_SECONDS = 900
# The Odoo source, then the runtime image's own Python (standard library and Debian's
# packages). Only Odoo's result counts: the standard library ships files that are not
# meant to compile (lib2to3's test data), which is no reason to warn.
COMPILE_SCRIPT = """
import compileall, sys
odoo = compileall.compile_dir(sys.argv[1], quiet=1, workers=0)
for path in sys.path:
    if path.startswith("/usr/lib/python3"):
        compileall.compile_dir(path, quiet=2, workers=0)
sys.exit(0 if odoo else 1)
"""
CACHE_MODE = 0o755


def cache_dir(svc, version: str) -> Path:
    base = svc.config.runtime.bytecode_dir
    return (Path(base) if base else svc.config.paths.odoo / "bytecode") / version


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
            command=["python3", "-c", COMPILE_SCRIPT, containers.ODOO_DIR],
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
