"""The guest's protocol channel (its ttyS1): @@MPIO: lines out, acknowledgements in.

The kernel console (ttyS0) goes to a file and is only scanned afterwards; keeping the
protocol off it means no kernel message can ever split a marker line.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import time
from typing import TextIO

import pexpect
import pexpect.fdpexpect

MARKER = re.compile(r"@@MPIO:([A-Z]+) ?([^\r\n]*)\r?\n")


@dataclasses.dataclass(frozen=True)
class Message:
    kind: str  # START, STEP, SCENARIO, CHECK, EVENT, BEGIN, LINE, STOP, VERDICT
    text: str
    at: float  # seconds since QEMU started


class ChannelClosed(Exception):
    """The guest side is gone: QEMU exited (panic=-1 and -no-reboot make a panic an exit)."""


class ChannelTimeout(Exception):
    pass


class Channel:
    def __init__(self, sock: socket.socket, started: float, log: TextIO) -> None:
        self.sock = sock
        self.started = started
        self.child = pexpect.fdpexpect.fdspawn(sock.fileno(), encoding="utf-8",
                                               codec_errors="replace", logfile=log)

    def receive(self, deadline: float) -> Message:
        timeout = max(0.0, deadline - time.monotonic())
        index = self.child.expect([MARKER, pexpect.EOF, pexpect.TIMEOUT], timeout=timeout)
        if index == 1:
            raise ChannelClosed()
        if index == 2:
            raise ChannelTimeout()
        match = self.child.match
        assert isinstance(match, re.Match)
        return Message(match.group(1), match.group(2).strip(), time.monotonic() - self.started)

    def acknowledge(self, event: str) -> None:
        self.child.send(f"mpio-ack {event}\n")
