"""Where a name points, as this machine's resolver says (for custom domains' DNS check)."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

# A resolver that does not answer within this long counts as "does not resolve".
TIMEOUT_SECONDS = 3.0
_pool = ThreadPoolExecutor(4, thread_name_prefix="dns")


def addresses(name: str, timeout: float = TIMEOUT_SECONDS) -> list[str]:
    """The IPv4 and IPv6 addresses `name` resolves to, sorted; [] when it does not."""
    def lookup() -> list[str]:
        try:
            found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError, OSError):
            return []
        return sorted({info[4][0] for info in found})
    try:
        return _pool.submit(lookup).result(timeout)
    except FutureTimeout:
        return []
