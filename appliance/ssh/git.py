"""git fetch and push over SSH: git's own upload-pack and receive-pack on the project's
bare repository, talking to the client through the SSH channel (this process's stdin and
stdout, which they inherit).

The rights and the push path are those of git over HTTP (appliance.gitserve): any member
may fetch and push, the pre-receive answer checks branch names and the pusher's right to
each branch's stage, the post-receive one queues the builds, and git shows both answers
as `remote:` lines. The repository's hooks (appliance.githook) ask for these answers over
HTTP; here they ask this process, which listens on loopback for the one push, behind a
ticket made for it, while receive-pack runs.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from appliance import gitserve
from appliance.config import Config
from appliance.errors import UserError
from appliance.ssh.request import GitRequest
from appliance.store.db import Database

log = logging.getLogger(__name__)

# What a hook may send: the ref updates of one push (a line of about 100 bytes each).
MAX_HOOK_BODY = 8 * 1024 * 1024
# The protocol version a client asks for (SendEnv GIT_PROTOCOL), passed on as it is only
# when it reads as one.
GIT_PROTOCOL = re.compile(r"^version=[0-9]$")


def serve(cfg: Config, db: Database, user: dict, request: GitRequest,
          environ: dict[str, str]) -> int:
    """Run the git program the client asked for; its exit status. UserError (nothing
    run) when the user may not reach the repository or the push is refused outright."""
    with db.transaction() as conn:
        project, repo = gitserve.repository(conn, cfg, user, request.project)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": str(cfg.paths.data_dir)}
    if GIT_PROTOCOL.match(environ.get("GIT_PROTOCOL", "")):
        env["GIT_PROTOCOL"] = environ["GIT_PROTOCOL"]
    program = shutil.which("git") or "git"
    if not request.pushes:
        return subprocess.run([program, "upload-pack", "--strict", str(repo)],
                              env=env).returncode
    # A GitError here is the pusher's to read, as over HTTP; nothing was received.
    env.update(gitserve.max_input_env(gitserve.push_allowance(cfg, repo, None)))
    with HookServer(cfg, db, project["id"], user["id"]) as hooks:
        env.update(hooks.environment())
        code = subprocess.run([program, "receive-pack", str(repo)], env=env).returncode
    log.info("ssh push to %s by %s: git receive-pack exited %s", project["name"],
             user["name"], code)
    return code


def client_address() -> str:
    """The SSH client's address, as sshd tells the forced command."""
    return os.environ.get("SSH_CONNECTION", "").split(" ")[0]


class HookServer:
    """The answers to one push's hooks, on 127.0.0.1, for whoever holds its ticket."""

    def __init__(self, cfg: Config, db: Database, project_id: int, user_id: int):
        self.ticket = secrets.token_urlsafe(32)
        grant = {"cfg": cfg, "db": db, "project_id": project_id, "user_id": user_id,
                 "ticket": self.ticket, "address": client_address()}
        handler = type("Handler", (_HookHandler,), {"grant": grant})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="ssh-push-hooks")

    def environment(self) -> dict[str, str]:
        host, port = self.server.server_address[:2]
        return {"APPLIANCE_HOOK_URL": f"http://{host}:{port}",
                "APPLIANCE_HOOK_TICKET": self.ticket}

    def __enter__(self) -> "HookServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _HookHandler(BaseHTTPRequestHandler):
    grant: dict  # set on the subclass HookServer makes

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        hook = self.path.lstrip("/")
        given = self.headers.get("X-Appliance-Ticket", "")
        if hook not in gitserve.HOOKS or not hmac.compare_digest(
                given.encode(), self.grant["ticket"].encode()):
            return self._answer(403, "unknown or expired push ticket")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_HOOK_BODY:
            return self._answer(400, "the hook sent no readable ref updates")
        updates = self.rfile.read(length).decode(errors="replace")
        grant = self.grant
        try:
            lines = gitserve.hook_answer(grant["db"], grant["cfg"], grant["project_id"],
                                         grant["user_id"], hook, updates, grant["address"])
        except UserError as exc:
            return self._answer(400, str(exc))
        return self._answer(200, "\n".join(lines))

    def _answer(self, status: int, text: str) -> None:
        body = (text if text.endswith("\n") or not text else text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("push hook: " + format, *args)
