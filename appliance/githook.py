"""The git hooks of every project repository: hand the ref updates to the daemon.

Run by `git receive-pack` (under `git http-backend`) as `python -m appliance.githook
pre-receive|post-receive`. It imports nothing of the appliance beyond the standard
library: the daemon that started the push decides, and this prints its answer, which git
shows the pusher as `remote:` lines. The daemon gives the address and a single-push ticket
in the environment.
"""

import os
import sys
import urllib.error
import urllib.request

# The daemon answers from memory and the state database; a minute is generous.
TIMEOUT = 60


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("pre-receive", "post-receive"):
        sys.stderr.write("usage: python -m appliance.githook pre-receive|post-receive\n")
        return 2
    url = os.environ.get("APPLIANCE_HOOK_URL")
    ticket = os.environ.get("APPLIANCE_HOOK_TICKET")
    if not url or not ticket:
        sys.stdout.write("pushes are only accepted through the appliance\n")
        return 1
    request = urllib.request.Request(f"{url}/{argv[1]}", data=sys.stdin.buffer.read(),
                                     headers={"X-Appliance-Ticket": ticket}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            sys.stdout.write(response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        sys.stdout.write(exc.read().decode())
        return 1
    except OSError as exc:
        sys.stdout.write(f"the appliance did not answer the push: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
