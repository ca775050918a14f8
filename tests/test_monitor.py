"""The QMP layer over qemu.qmp, against a stand-in QEMU on a socket pair."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from rapido_mpio.monitor import BlockIOError, Monitor, MonitorError

from .fake_qemu import serve_qmp


def test_commands_hmp_errors_and_events() -> None:
    ours, theirs = socket.socketpair()
    replies = {"human-monitor-command": "Device 'x' not found\r\n",
               "device_add": {"error": {"class": "GenericError", "desc": "Duplicate ID"}}}
    threading.Thread(target=serve_qmp, args=(theirs, replies), daemon=True).start()
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


def _event(name: str, **data: object) -> bytes:
    return json.dumps({"event": name, "data": data,
                       "timestamp": {"seconds": 0, "microseconds": 0}}).encode() + b"\n"


def test_poll_sees_what_qemu_reported_even_after_it_exited() -> None:
    """A full host disk: QEMU reports the failed write and pauses the guest (werror=enospc);
    a host I/O error it reports to the guest, and may exit before the host looks."""
    ours, theirs = socket.socketpair()
    replies = {"query-status": {"status": "io-error", "running": False}}
    threading.Thread(target=serve_qmp, args=(theirs, replies), daemon=True).start()
    monitor = Monitor(ours)
    assert monitor.poll() == ("io-error", [])
    theirs.sendall(_event("BLOCK_IO_ERROR", device="l0p1", operation="write", action="stop",
                          nospace=True, reason="No space left on device") + _event("STOP"))
    status, events = monitor.poll()
    assert status == "io-error" and [e["event"] for e in events] == ["BLOCK_IO_ERROR", "STOP"]
    full = BlockIOError.from_event(events[0])
    assert full == BlockIOError("l0p1", "write", "stop", True, "No space left on device")
    assert full.host_side and BlockIOError.from_event(events[1]) is None
    theirs.sendall(_event("BLOCK_IO_ERROR", device="l0p0", operation="read", action="report",
                          reason="Input/output error"))
    theirs.shutdown(socket.SHUT_RDWR)  # QEMU is gone: what it said before is still read
    status, events = monitor.poll()
    assert status is None
    broken = BlockIOError.from_event(events[0])
    assert broken is not None and broken.host_side and broken.reason == "Input/output error"
    monitor.close()


def test_a_pulled_path_is_not_the_hosts_failure() -> None:
    """I/O on a path whose drive we cut (drive_del) is the fault under test."""
    pulled = BlockIOError("", "write", "report", False, "No medium found")
    assert not pulled.host_side


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
