"""QMP, QEMU's machine-readable monitor, through the QEMU project's own qemu.qmp package.

A thin synchronous layer over its asyncio client, with a deadline on every exchange (the
package's own sync shim has none on connecting, and a QEMU that never greets would hang a
run): one error type for every way a command can fail, HMP commands that report errors
as text turned into errors, waiting for an event (device removal is only done when
QEMU says DEVICE_DELETED, not when device_del returns), and a look at what QEMU reported on
its own (a LUN's backing file that could not be written pauses the guest).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from qemu.qmp import QMPClient, QMPError

COMMAND_TIMEOUT = 10.0
T = TypeVar("T")


class MonitorError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class BlockIOError:
    """QEMU's BLOCK_IO_ERROR: a drive's read or write failed on the host."""

    device: str  # the drive ("" for one already cut from its device by drive_del)
    operation: str  # read or write
    action: str  # stop (the guest is paused: werror=enospc), report (the guest sees it)
    nospace: bool  # the host file system is full
    reason: str  # the host's error, as strerror() words it

    # A path we pulled with drive_del fails its I/O this way: that is the fault under test
    PULLED = "No medium found"

    @staticmethod
    def from_event(event: dict[str, Any]) -> BlockIOError | None:
        data = event.get("data")
        if event.get("event") != "BLOCK_IO_ERROR" or not isinstance(data, dict):
            return None
        return BlockIOError(str(data.get("device", "")), str(data.get("operation", "")),
                            str(data.get("action", "")), data.get("nospace") is True,
                            str(data.get("reason", "")))

    @property
    def host_side(self) -> bool:
        """The host failed the guest's I/O (full, read-only or broken storage under a LUN's
        file), rather than the fault the scenario made."""
        return self.nospace or self.reason != self.PULLED


class Monitor:
    """QMP over a socket QEMU has already connected to (we listen, so that nothing QEMU
    says is lost before we attach, and so that we notice at once if QEMU dies instead)."""

    def __init__(self, sock: socket.socket, timeout: float = COMMAND_TIMEOUT) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)  # qemu.qmp looks up the current loop itself
        # a Ctrl-C in the middle of an exchange leaves a task whose error asyncio would
        # print as a traceback at exit: keep such errors instead
        self.loop_errors: list[str] = []
        self._loop.set_exception_handler(
            lambda _loop, context: self.loop_errors.append(str(context.get("message"))))
        self._client = QMPClient("rapido-mpio")
        self.events: list[dict[str, Any]] = []  # every event seen, in order
        try:
            self._run(self._client.connect(sock), timeout, "no QMP session")
        except MonitorError:
            self.close()
            raise

    def _run(self, step: Awaitable[T], timeout: float, what: str) -> T:
        try:
            return self._loop.run_until_complete(asyncio.wait_for(step, timeout))
        except TimeoutError:
            raise MonitorError(f"{what}: no answer within {timeout:g}s") from None
        except (QMPError, OSError) as e:
            raise MonitorError(f"{what}: {e or type(e).__name__}") from None
        except BaseException:  # Ctrl-C: end the exchange inside the loop, then go on out
            self._cancel_all()
            raise

    def _cancel_all(self) -> None:
        """Cancel what is still running, and let it clean up while the loop runs (a task
        left to the garbage collector cleans up without a loop and prints a traceback)."""
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.wait_for(self._client.disconnect(), 2))
        self._cancel_all()
        with contextlib.suppress(Exception):
            self._loop.close()

    def execute(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        return self._run(self._client.execute(name, arguments or None), self.timeout, name)

    def hmp(self, command_line: str) -> None:
        """An HMP command (drive_add, drive_del have no QMP twin); HMP reports errors as
        text, so any output but drive_add's OK is a failure."""
        out = str(self.execute("human-monitor-command", {"command-line": command_line}) or "")
        if out.strip() and not out.strip().upper().startswith("OK"):
            raise MonitorError(f"{command_line}: {out.strip()}")

    def send_keys(self, *keys: str) -> None:
        """Press keys together on the guest's keyboard (QEMU qcodes, e.g. alt sysrq w)."""
        self.execute("send-key", {"keys": [{"type": "qcode", "data": k} for k in keys]})

    def poll(self) -> tuple[str | None, list[dict[str, Any]]]:
        """QEMU's run state (running, paused, io-error, ...; None: QEMU is gone) and the
        events it sent since the last look, without waiting for more. Answering
        query-status, QEMU sends the events before the answer, and the client queues them
        as it reads its way to it; a QEMU that has exited leaves what it sent before to
        be read the same way."""
        try:
            status = self.execute("query-status")
        except MonitorError:
            status = None
        new = [dict(e) for e in self._client.events.clear()]
        self.events.extend(new)
        return str(status.get("status", "")) if isinstance(status, dict) else None, new

    def wait_event(self, name: str, data: dict[str, Any], timeout: float) -> float:
        """Wait for event NAME whose data includes `data`; returns the seconds waited."""
        began = time.monotonic()
        while True:
            left = began + timeout - time.monotonic()
            if left <= 0:
                raise MonitorError(f"no {name} event for {data} within {timeout:g}s")
            try:
                event = dict(self._run(self._client.events.get(), left, f"waiting for {name}"))
            except MonitorError:
                if time.monotonic() - began >= timeout:
                    raise MonitorError(f"no {name} event for {data} within {timeout:g}s") \
                        from None
                raise
            self.events.append(event)
            got = event.get("data")
            if event.get("event") == name and isinstance(got, dict) and \
                    data.items() <= got.items():
                return time.monotonic() - began
