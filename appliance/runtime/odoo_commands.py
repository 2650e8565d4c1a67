"""Odoo's command lines: serve, install, update. Pure functions, the same for real Odoo 18
and the stand-in."""

from __future__ import annotations

from typing import Iterable


def server_command(
    *, odoo_bin: str, database: str, db_host: str, db_user: str, db_password: str | None,
    addons_path: list[str], data_dir: str, http_port: int = 8069,
    logfile: str | None = None, extra: Iterable[str] = (),
) -> list[str]:
    """`python3 odoo-bin ...` serving `database`.

    Leave `db_password` None and pass PGPASSWORD in the environment instead: the
    command line is visible in `ps`, the environment is not.
    """
    command = ["python3", odoo_bin, "-d", database, "--db_host", db_host, "-r", db_user]
    if db_password is not None:
        command += ["-w", db_password]
    if addons_path:
        command += ["--addons-path", ",".join(addons_path)]
    command += ["-D", data_dir, "-p", str(http_port)]
    if logfile:
        command += ["--logfile", logfile]
    return command + list(extra)


def install_command(*, modules: list[str], demo: bool, test_enable: bool,
                    test_tags: str | None = None, **server) -> list[str]:
    """Install `modules` (with their dependencies), optionally test, then stop.
    `server` takes server_command's arguments."""
    command = server_command(**server) + ["-i", ",".join(modules), "--stop-after-init"]
    if not demo:
        command.append("--without-demo=all")
    return command + _test_options(test_enable, test_tags)


def update_command(*, modules: list[str], test_enable: bool, test_tags: str | None = None,
                   **server) -> list[str]:
    """Update installed `modules` (`-u`: migrations, data), optionally test, then stop.
    `server` takes server_command's arguments."""
    command = server_command(**server) + ["-u", ",".join(modules), "--stop-after-init"]
    return command + _test_options(test_enable, test_tags)


def _test_options(test_enable: bool, test_tags: str | None) -> list[str]:
    options = ["--test-enable"] if test_enable or test_tags else []
    if test_tags:
        options += ["--test-tags", test_tags]
    return options
