"""A build's code floods the daemon with output.

Its one-off runs (the install of every development build, odoo-update from a terminal)
print what the branch's modules print, and the daemon reads it line by line: a "line"
of a gigabyte, with no line break, must not be gathered in the daemon's memory (nor
copied again at each piece). And the terminal asking for odoo-update, which is the
build's own code once it has read the terminal's token, may stop reading the answer:
what the daemon keeps for it stays small, the rest goes to update.log only.
"""

from __future__ import annotations

import asyncio
import json
import threading

from appliance.jobs import common
from appliance.services import Services
from appliance.shell import control


def test_output_without_line_breaks_reaches_the_reader_in_bounded_pieces():
    seen = []
    splitter = common.LineSplitter(lambda line: seen.append(len(line)))
    for _ in range(64):  # 64 MiB, one line
        splitter.feed("x" * (1 << 20))
    splitter.feed("end\n")
    assert len(splitter.pending) <= common.MAX_LINE_CHARS
    assert max(seen) <= common.MAX_LINE_CHARS
    assert sum(seen) == (64 << 20) + 3


def test_a_terminal_that_stops_reading_odoo_update_s_output_holds_little_of_the_daemon(
        config, db, make_build):
    build = make_build("feature", state="running")
    printed = threading.Event()
    flood = 40 << 20  # what the update prints: 40 MiB

    def update(svc, build_id, request, say):
        line = "y" * 999
        for _ in range(flood // 1000):
            say(line)
        printed.set()

    async def ask_and_stop_reading() -> int:
        sockets = control.ControlSockets(Services(config, db), update)
        await sockets.sync()
        path = str(control.folder(config, build["id"]) / control.SOCKET_NAME)
        try:
            reader, writer = await asyncio.open_unix_connection(path)  # reads 128 KiB, no more
            writer.write(json.dumps({"action": "restart", "token": "t"}).encode() + b"\n")
            await writer.drain()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, printed.wait, 60)
            await asyncio.sleep(0.5)  # what say() queued is written (or dropped)
            received = 0
            try:
                while chunk := await asyncio.wait_for(reader.read(1 << 20), 5):
                    received += len(chunk)
            except (ConnectionError, asyncio.TimeoutError):
                pass
            writer.close()
            return received
        finally:
            await sockets.close()

    received = asyncio.run(ask_and_stop_reading())
    assert received <= control.MAX_PENDING_BYTES + (4 << 20), received
