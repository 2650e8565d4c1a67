"""SSH into the appliance: git over SSH and build shells, through the host's own OpenSSH.

The security model, as Gitea and GitLab have it:

- One system user (`[ssh] user`, the appliance's own) is the only account this concerns.
  A drop-in in /etc/ssh/sshd_config.d/ (sshd_config.py, written by `appliance
  ssh-install`) gives it no authorized_keys file, no password, no forwarding of any kind
  and no user rc; nothing else of the host's sshd changes.
- sshd asks the appliance which key it was offered (AuthorizedKeysCommand: `appliance
  ssh-keys`, authorized.py). A registered key of an active user comes back with
  `restrict,pty,command="appliance ssh-command <key id>"`: whatever the client asks, the
  appliance's dispatcher runs instead, knowing whose key it was.
- The dispatcher (command.py) reads the client's wish from SSH_ORIGINAL_COMMAND and serves
  only git's two transfer programs on a project's repository (git.py, the same push path
  and rights as over HTTP) and a build's shell (shell.py, the browser shell's terminal,
  with the policy's "shell" right on the build's stage). Anything else is refused.
"""
