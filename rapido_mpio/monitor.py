"""QMP, QEMU's machine-readable monitor, through the QEMU project's own qemu.qmp package.

A thin layer: one error type for every way a command can fail, HMP commands that report
errors as text turned into errors, and waiting for an event (device removal is only done
when QEMU says DEVICE_DELETED, not when device_del returns).
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

COMMAND_TIMEOUT = 10.0


class MonitorError(Exception):
    pass


class Monitor:
    """QMP over a socket QEMU has already connected to (we listen, so that nothing QEMU
    says is lost before we attach, and so that we notice at once if QEMU dies instead)."""

    def __init__(self, sock: socket.socket) -> None:
        self._qmp = QEMUMonitorProtocol(sock)
        self._qmp.settimeout(COMMAND_TIMEOUT)
        self.events: list[dict[str, Any]] = []  # every event seen, in order
        try:
            self._qmp.connect(negotiate=True)
        except (TimeoutError, QMPError, OSError) as e:
            raise MonitorError(f"no QMP session: {e or type(e).__name__}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._qmp.close()

    def execute(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        try:
            return self._qmp.cmd(name, **(arguments or {}))
        except (TimeoutError, QMPError, OSError) as e:
            raise MonitorError(f"{name}: {e or type(e).__name__}") from None

    def hmp(self, command_line: str) -> None:
        """An HMP command (drive_add, drive_del have no QMP twin); HMP reports errors as
        text, so any output is a failure."""
        out = str(self.execute("human-monitor-command", {"command-line": command_line}) or "")
        if out.strip() and not out.strip().upper().startswith("OK"):
            raise MonitorError(f"{command_line}: {out.strip()}")

    def send_keys(self, *keys: str) -> None:
        """Press keys together on the guest's keyboard (QEMU qcodes, e.g. alt sysrq w)."""
        self.execute("send-key", {"keys": [{"type": "qcode", "data": k} for k in keys]})

    def wait_event(self, name: str, data: dict[str, Any], timeout: float) -> float:
        """Wait for event NAME whose data includes `data`; returns the seconds waited."""
        began = time.monotonic()
        seen = len(self.events)
        while True:
            for event in self.events[seen:]:
                if event.get("event") == name and \
                        data.items() <= dict(event.get("data") or {}).items():
                    return time.monotonic() - began
            seen = len(self.events)
            left = began + timeout - time.monotonic()
            if left <= 0:
                raise MonitorError(f"no {name} event for {data} within {timeout:g}s")
            try:
                pulled = self._qmp.pull_event(wait=left)
            except TimeoutError:
                continue
            except (QMPError, OSError) as e:
                raise MonitorError(f"waiting for {name}: {e or type(e).__name__}") from None
            if pulled is not None:
                self.events.append(pulled)
