"""A Caddy of a test's (or a bench's) own: `caddy run --resume` as Debian's caddy-api unit
runs it, on free loopback ports, its data and autosaved configuration in a folder."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.integration.harness import free_port


class CaddyUnderTest:
    """A `caddy run` of the test's own, as Debian's caddy-api unit runs it (--resume)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.admin = f"127.0.0.1:{free_port()}"
        self.https_port, self.http_port = free_port(), free_port()
        self.process = None
        self.env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data"),
                    "XDG_CONFIG_HOME": str(folder / "config")}
        (folder / "init.json").write_text(json.dumps({"admin": {"listen": self.admin}}))

    @property
    def root_certificate(self) -> Path:
        return self.folder / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def start(self, resume: bool = True) -> None:
        command = ["caddy", "run", "--config", str(self.folder / "init.json")]
        if resume:
            command.append("--resume")
        log = open(self.folder / "caddy.log", "ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://{self.admin}/config/"],
                              check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("caddy did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
