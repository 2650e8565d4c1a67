"""The package on a host with OpenSSH's server: it sets up the SSH entry (the appliance
user's shell, the sshd drop-in, the AuthorizedKeysCommand dpkg owns) and takes it away
when removed. Without openssh-server nothing of it happens (test_deb.py's installs)."""

from __future__ import annotations

import pytest

from tests.packaging.helpers import Container

pytestmark = pytest.mark.docker

DROPIN = "/etc/ssh/sshd_config.d/odoo-appliance.conf"
COMMAND = "/usr/libexec/odoo-appliance/ssh-authorized-keys"


def test_with_openssh_the_package_opens_the_ssh_entry_and_removing_it_closes_it(deb, deb_image):
    container = Container(deb_image, deb)
    try:
        container.run("apt-get install -y -q --no-install-recommends openssh-server && "
                      "pg_ctlcluster 15 main start")
        output = container.run(f"apt-get install -y {container.deb}")
        assert f"ssh: wrote {DROPIN}" in output
        assert f"ssh: wrote {COMMAND}" not in output  # the package's own copy is right
        assert container.run("getent passwd appliance").strip().endswith(":/bin/sh")
        assert container.run(f"stat -c '%a %U' {COMMAND} {DROPIN}").splitlines() == [
            "755 root", "644 root"]
        container.run("mkdir -p /run/sshd && sshd -t")
        settings = container.run("sshd -T -C user=appliance,host=x,addr=192.0.2.1")
        assert f"authorizedkeyscommand {COMMAND} %u %t %k" in settings
        assert "disableforwarding yes" in settings and "authorizedkeysfile none" in settings
        assert "authorizedkeysfile .ssh/authorized_keys" in container.run(
            "sshd -T -C user=root,host=x,addr=192.0.2.1")
        container.run("dpkg-reconfigure odoo-appliance")  # safe to re-run

        container.run("apt-get remove -y odoo-appliance")
        left = container.run(f"ls {DROPIN} {COMMAND} 2>&1; getent passwd appliance; "
                             "sshd -t && echo sshd ok")
        assert f"cannot access '{DROPIN}'" in left and f"cannot access '{COMMAND}'" in left
        assert ":/usr/sbin/nologin" in left and "sshd ok" in left
    finally:
        container.remove()
