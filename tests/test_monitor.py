"""The QMP layer over qemu.qmp, against a stand-in QEMU on a socket pair."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from rapido_mpio.monitor import Monitor, MonitorError

from . import fake_qmp


def _fake_qemu(sock: socket.socket, replies: dict[str, object]) -> None:
    """Answers each command from `replies` (a dict with "error" is an error), and sends
    DEVICE_DELETED after device_del, as QEMU does."""
    def answer(request: dict[str, Any]) -> list[dict[str, Any]]:
        name, rid = request["execute"], request.get("id")
        found = replies.get(name, {})
        reply = ({"error": found["error"]} if isinstance(found, dict) and "error" in found
                 else {"return": found})
        if name != "device_del":
            return [{**reply, "id": rid}]
        return [{**reply, "id": rid},
                {"event": "DEVICE_DELETED", "data": {"device": request["arguments"]["id"]},
                 "timestamp": {"seconds": 0, "microseconds": 0}}]

    fake_qmp.serve(sock, answer)


def test_commands_hmp_errors_and_events() -> None:
    ours, theirs = socket.socketpair()
    replies = {"human-monitor-command": "Device 'x' not found\r\n",
               "device_add": {"error": {"class": "GenericError", "desc": "Duplicate ID"}}}
    threading.Thread(target=_fake_qemu, args=(theirs, replies), daemon=True).start()
    monitor = Monitor(ours)
    monitor.execute("device_del", {"id": "l0p0dev"})
    assert monitor.wait_event("DEVICE_DELETED", {"device": "l0p0dev"}, 5) < 5
    with pytest.raises(MonitorError, match="not found"):  # HMP reports errors as text
        monitor.hmp("drive_del x")
    with pytest.raises(MonitorError, match="Duplicate ID"):
        monitor.execute("device_add", {"id": "x"})
    with pytest.raises(MonitorError, match="no DEVICE_DELETED"):
        monitor.wait_event("DEVICE_DELETED", {"device": "other"}, 0.3)
    monitor.close()


def test_qemu_that_never_greets_is_an_error_not_a_hang() -> None:
    ours, _theirs = socket.socketpair()
    with pytest.raises(MonitorError, match="no QMP session: no answer within 0.5s"):
        Monitor(ours, timeout=0.5)


def test_ctrl_c_in_the_middle_of_a_qmp_exchange_prints_no_traceback() -> None:
    """QEMU has connected but not yet greeted when the user presses Ctrl-C: asyncio must not
    print the abandoned task's error at exit."""
    code = """
import os, signal, socket, threading
from rapido_mpio.monitor import Monitor
ours, theirs = socket.socketpair()
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    Monitor(ours)
except KeyboardInterrupt:
    print("interrupted")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=30)
    assert p.stdout.strip() == "interrupted", p.stderr
    assert "Traceback" not in p.stderr and "exception" not in p.stderr, p.stderr
