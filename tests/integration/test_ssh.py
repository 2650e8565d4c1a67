"""git and build shells over SSH, through a real sshd this test starts on loopback with
the appliance's own drop-in (its Match block, AuthorizedKeysCommand and forced command),
in front of a real daemon building with Docker.

The test's sshd runs as root with its own host key and configuration (the host's /etc/ssh
is only read, never changed), and its SSH user is root: the daemon under test runs as
root here, and the forced command needs the daemon's rights.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from appliance import policy
from appliance.ssh import sshd_config
from appliance.store import ssh_keys
from appliance.store import users as users_store
from tests.integration.harness import BUILD_LINE, Appliance, free_port, git, make_repo

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd's AuthorizedKeysCommand needs root"),
    pytest.mark.skipif(not Path(sshd_config.SSHD).exists(), reason="no openssh-server"),
]

PASSWORD = "a long enough passphrase 42"
# Where the test's sshd keeps its configuration and AuthorizedKeysCommand.
SAFE_PARENT = Path("/run/appliance-test-sshd")


class Sshd:
    """An sshd on 127.0.0.1 whose configuration is the appliance's drop-in for `user`.
    sshd runs an AuthorizedKeysCommand only from a path that root owns all the way up and
    nobody else may write: the folder is made under /run (root's, 0755), never where the
    checkout happens to be (under /tmp, sticky and world-writable, sshd refuses it)."""

    def __init__(self, cfg, user: str = "root"):
        SAFE_PARENT.mkdir(mode=0o755, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="sshd-", dir=SAFE_PARENT))
        self.folder.chmod(0o755)
        self.port = free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(self.folder / "host_key")], check=True)
        wrapper = self.folder / "authorized-keys"
        wrapper.write_text(sshd_config.wrapper_script(cfg))
        wrapper.chmod(0o755)
        (self.folder / "dropin.conf").write_text(sshd_config.dropin(user, wrapper, user))
        (self.folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            f"HostKey {self.folder / 'host_key'}\nPidFile {self.folder / 'sshd.pid'}\n"
            f"UsePAM no\nInclude {self.folder / 'dropin.conf'}\n")
        self.process = None

    def start(self) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation
        self.process = subprocess.Popen(
            [sshd_config.SSHD, "-D", "-e", "-f", str(self.folder / "sshd_config")],
            stderr=open(self.folder / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()}")

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def client(self, key: Path) -> list[str]:
        """ssh, offering this key and no other, to the SSH user on this sshd."""
        return ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-p", str(self.port), "root@127.0.0.1"]

    def run(self, key: Path, *command: str, input: str | None = None, tty: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess:
        args = self.client(key)
        args[1:1] = ["-tt"] if tty else ["-T"]
        return subprocess.run([*args, *command], input=input or "", capture_output=True,
                              text=True, timeout=timeout)


def make_key(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A daemon with project acme, developer ada (her key registered), outsider otto (his
    too), and an sshd with the appliance's drop-in in front of it."""
    folder = tmp_path_factory.mktemp("ssh")
    app = Appliance(folder, "ssh")
    with app.config_path.open("a") as config:
        # Terminals over SSH close after 1.2 s without activity (read at each session).
        config.write('\n[ssh]\nuser = "root"\n\n[shell]\nidle_minutes = 0.02\n')
    sshd = None
    try:
        app.start()
        project = app.make_project("acme")
        app.keys = {}
        with app.db.transaction() as conn:
            for name, role in (("ada", "developer"), ("otto", None)):
                user = users_store.create_user(conn, name, PASSWORD)
                if role:
                    users_store.add_member(conn, project["id"], user["id"], role)
                app.keys[name] = make_key(folder, name)
                ssh_keys.add(conn, user, app.keys[name].with_suffix(".pub").read_text())
        sshd = Sshd(app.config)
        sshd.start()
        app.sshd = sshd
        yield app
    finally:
        if sshd is not None:
            sshd.close()
        app.close()


def ssh_git(site, key: Path, folder: Path, *args: str, check: bool = True):
    """git in `folder`, with ssh offering `key` to the test's sshd."""
    command = shlex.join(site.sshd.client(key)[:-3])  # all but -p PORT user@host
    os.environ["GIT_SSH_COMMAND"] = command
    try:
        return git(folder, *args, check=check)
    finally:
        del os.environ["GIT_SSH_COMMAND"]


def remote(site, project: str = "acme") -> str:
    return f"ssh://root@127.0.0.1:{site.sshd.port}/{project}.git"


@pytest.fixture(scope="module")
def pushed(site, tmp_path_factory):
    """ada's push of a green addon over SSH: (what git printed, the build once running)."""
    repo = make_repo(tmp_path_factory.mktemp("work") / "repo", "green")
    result = ssh_git(site, site.keys["ada"], repo, "push", remote(site),
                     "HEAD:refs/heads/feature-ssh")
    ids = [int(m.group(1)) for m in BUILD_LINE.finditer(result.stderr)]
    assert len(ids) == 1, result.stderr
    return result.stderr, site.wait_build(ids[0])


def test_a_push_over_ssh_builds_the_branch_with_the_same_answer_as_over_http(site, pushed):
    printed, build = pushed
    assert (build["state"], build["result"]) == ("running", "success"), build["reason"]
    assert f"remote: feature-ssh (development): build #{build['id']} queued" in printed
    with site.db.transaction() as conn:
        (key,) = ssh_keys.of_user(conn, users_store.user_by_name(conn, "ada")["id"])
        who = conn.execute("SELECT u.name FROM builds b JOIN users u ON u.id = b.created_by "
                           "WHERE b.id = %s", (build["id"],)).fetchone()
    assert key["last_used_at"] is not None
    assert who["name"] == "ada"


def test_a_fetch_over_ssh_gets_what_was_pushed(site, pushed, tmp_path):
    _, build = pushed
    listing = ssh_git(site, site.keys["ada"], tmp_path, "ls-remote", remote(site)).stdout
    assert f"{build['commit']}\trefs/heads/feature-ssh" in listing


def test_someone_outside_the_project_cannot_push_nor_learn_it_exists(site, tmp_path):
    repo = make_repo(tmp_path / "repo", "green")
    result = ssh_git(site, site.keys["otto"], repo, "push", remote(site), "HEAD:refs/heads/x",
                     check=False)
    assert result.returncode != 0
    assert "project 'acme' does not exist (or you are not a member of it)" in result.stderr
    with site.db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM branches WHERE name = 'x'"
                            ).fetchone()["n"] == 0


def test_an_unregistered_key_is_refused(site, tmp_path):
    stranger = make_key(tmp_path, "stranger")
    result = site.sshd.run(stranger, "build-1")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_a_removed_key_is_refused_at_once(site, tmp_path):
    key = make_key(tmp_path, "old-laptop")
    with site.db.transaction() as conn:
        row = ssh_keys.add(conn, users_store.user_by_name(conn, "ada"),
                           key.with_suffix(".pub").read_text())
    assert site.sshd.run(key, "no-such-thing").returncode == 1  # in, then refused
    with site.db.transaction() as conn:
        ssh_keys.remove(conn, row["user_id"], row["id"])
    assert site.sshd.run(key, "no-such-thing").returncode == 255


def test_the_keys_of_a_disabled_user_are_refused(site, tmp_path):
    key = make_key(tmp_path, "dora")
    with site.db.transaction() as conn:
        ssh_keys.add(conn, users_store.create_user(conn, "dora", PASSWORD),
                     key.with_suffix(".pub").read_text())
        users_store.set_disabled(conn, "dora", True)
    result = site.sshd.run(key, "build-1")
    assert result.returncode == 255 and "Permission denied (publickey)" in result.stderr


@pytest.mark.parametrize("command", ["ls -la /", "scp -t /tmp",
                                     "git-upload-archive '/acme.git'"])
def test_an_unknown_command_is_refused_with_what_the_account_serves(site, command):
    result = site.sshd.run(site.keys["ada"], command)
    assert result.returncode == 1
    assert result.stderr.startswith("Hi ada (key 'ada'): ")
    assert "This account serves git and build shells, nothing else" in result.stderr


def test_a_login_without_command_gets_no_shell(site):
    result = site.sshd.run(site.keys["ada"], tty=True, input="echo hello\n")
    assert result.returncode == 1
    assert "there is no plain shell here" in result.stdout + result.stderr


def test_local_and_remote_port_forwarding_are_refused(site):
    target = socket.create_server(("127.0.0.1", 0))
    target.settimeout(1)
    local = free_port()
    forward = subprocess.Popen(
        [*site.sshd.client(site.keys["ada"])[:1], "-o", "LogLevel=INFO", "-N", "-L",
         f"{local}:127.0.0.1:{target.getsockname()[1]}", *site.sshd.client(site.keys["ada"])[1:]],
        stderr=subprocess.PIPE, text=True)
    try:
        reached = _connect(local)
        reached.settimeout(5)
        assert reached.recv(100) == b""  # the channel refused, the connection closed
        with pytest.raises(socket.timeout):
            target.accept()  # and nothing reached the target
    finally:
        forward.terminate()
        _, errors = forward.communicate(timeout=10)
        target.close()
    assert "administratively prohibited" in errors
    remote_forward = subprocess.run(
        [*site.sshd.client(site.keys["ada"])[:1], "-N", "-o", "ExitOnForwardFailure=yes",
         "-R", "0:127.0.0.1:9", *site.sshd.client(site.keys["ada"])[1:]],
        capture_output=True, text=True, timeout=30)
    assert remote_forward.returncode == 255
    assert "remote port forwarding failed" in remote_forward.stderr


def _connect(port: int, timeout: float = 15) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def shell_sessions(site, build_id: int) -> list[dict]:
    with site.db.transaction() as conn:
        return conn.execute("""SELECT s.channel, s.ended_at, u.name FROM shell_sessions s
                               JOIN users u ON u.id = s.user_id WHERE s.build_id = %s
                               ORDER BY s.id""", (build_id,)).fetchall()


def test_a_registered_key_reaches_the_shell_of_a_build_recorded_in_its_history(site, pushed):
    _, build = pushed
    for target in (f"build-{build['id']}", "acme/feature-ssh"):
        result = site.sshd.run(site.keys["ada"], target, tty=True,
                               input="echo $((6*7))-$APPLIANCE_BUILD-$(id -u)\nexit\n")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"42-{build['id']}-{site.config.runtime.uid}" in result.stdout
    sessions = shell_sessions(site, build["id"])
    assert [(s["channel"], s["name"]) for s in sessions] == [("ssh", "ada")] * 2
    assert all(s["ended_at"] is not None for s in sessions)


def test_a_shell_is_refused_to_those_the_policy_refuses_before_anything_starts(site, pushed):
    _, build = pushed
    result = site.sshd.run(site.keys["otto"], f"build-{build['id']}", tty=True)
    assert f"no build-{build['id']} (or you may not see it)" in result.stdout
    assert "acme" not in result.stdout  # the project of a build is not told to outsiders
    with site.db.transaction() as conn:
        project = conn.execute("SELECT * FROM projects WHERE name = 'acme'").fetchone()
        everything = {(stage, action, role) for (stage, action), roles in
                      policy.DEFAULTS.items() for role in roles if role != "admin"}
        policy.set_matrix(conn, project, everything - {("development", "shell", "developer")})
    try:
        result = site.sshd.run(site.keys["ada"], f"build-{build['id']}", tty=True)
    finally:
        with site.db.transaction() as conn:
            policy.set_matrix(conn, project, everything)
    assert result.returncode == 1
    assert "does not allow this on development: open a shell" in result.stdout
    assert shell_sessions(site, build["id"]) == [] or all(
        s["ended_at"] for s in shell_sessions(site, build["id"]))
    no_tty = site.sshd.run(site.keys["ada"], f"build-{build['id']}")
    assert "a shell needs a terminal: `ssh -t" in no_tty.stderr


def test_an_idle_shell_is_closed_with_a_notice_and_its_session_ended(site, pushed):
    _, build = pushed
    args = site.sshd.client(site.keys["ada"])
    args[1:1] = ["-tt"]
    client = subprocess.Popen([*args, f"build-{build['id']}"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watchdog = threading.Timer(30, client.kill)
    watchdog.start()
    try:  # its input stays open, and nothing is typed
        output = client.stdout.read()
        client.wait()
    finally:
        watchdog.cancel()
        client.stdin.close()
    assert b"[closed after 0.02 minutes without activity]" in output
    assert client.returncode == 0
    assert all(s["ended_at"] for s in shell_sessions(site, build["id"]))
