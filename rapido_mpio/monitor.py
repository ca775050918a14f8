"""QMP, the machine-readable monitor: greeting, capabilities, then one command at a time."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from rapido_mpio.scenario import MonitorCommand


class MonitorError(Exception):
    pass


class Monitor:
    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        greeting = self._receive(time.monotonic() + timeout)
        if "QMP" not in greeting:
            raise MonitorError(f"no QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def execute(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        request: dict[str, Any] = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise MonitorError(f"{name}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def send_keys(self, *keys: str) -> None:
        """Press keys together on the guest's keyboard (QEMU qcodes, e.g. alt sysrq w)."""
        self.execute("send-key", {"keys": [{"type": "qcode", "data": k} for k in keys]})

    def run(self, command: MonitorCommand) -> str:
        """Run a scenario's monitor step; returns what a human should see of it."""
        if command.hmp is not None:
            out = self.execute("human-monitor-command", {"command-line": command.hmp})
            text = str(out or "").strip()
            # HMP reports errors as text; a failed step must not pass as done
            if text:
                raise MonitorError(f"{command.hmp}: {text}")
            return command.hmp
        assert command.qmp is not None
        self.execute(command.qmp, command.arguments)
        return f"{command.qmp} {json.dumps(command.arguments)}"

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MonitorError("QMP did not answer in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as e:
                raise MonitorError(f"QMP connection lost: {e.strerror}") from None
            if not chunk:
                raise MonitorError("QMP connection closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message
