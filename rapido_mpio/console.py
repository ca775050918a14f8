"""The guest's protocol channel (its ttyS1): @@MPIO: lines out, acknowledgements in.

The kernel console (ttyS0) goes to a file and is only scanned afterwards; keeping the
protocol off it means no kernel message can ever split a marker line. What the guest sends
is decoded by protocol.py; this module only moves the bytes, and logs them as they come
(protocol.log, which the matrix's live view reads). pexpect reads the socket, with a
timeout and end-of-file for a QEMU that is gone; the lines are split by the decoder, not by
pexpect's expect(): that rescans its whole buffer on every read, and a guest that sent
megabytes without a newline made it quadratic (issue 15).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import socket
import time
from typing import TextIO

import pexpect
import pexpect.fdpexpect

from rapido_mpio.protocol import Decoder, Message, ProtocolError

CHUNK = 65536


class ChannelClosed(Exception):
    """The guest side is gone: QEMU exited (panic=-1 and -no-reboot make a panic an exit)."""


class ChannelTimeout(Exception):
    pass


class Channel:
    def __init__(self, sock: socket.socket, started: float, log: TextIO) -> None:
        self.sock = sock  # kept open by the caller; pexpect only borrows its fd
        sock.setblocking(True)  # an ack is written whole (select() says when to read)
        self.child = pexpect.fdpexpect.fdspawn(sock.fileno())
        self.started = started
        self.log = log
        self.text = codecs.getincrementaldecoder("utf-8")("replace")  # for the log only
        self.decoder = Decoder()
        self.pending: collections.deque[Message | ProtocolError] = collections.deque()

    def receive(self, deadline: float) -> Message:
        """The next message; ProtocolError for a line outside the protocol."""
        while not self.pending:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise ChannelTimeout()
            try:
                chunk: bytes = self.child.read_nonblocking(CHUNK, timeout)
            except pexpect.TIMEOUT:
                raise ChannelTimeout() from None
            except (pexpect.EOF, OSError):  # QEMU exited, or died (reset)
                raise ChannelClosed() from None
            self.log.write(self.text.decode(chunk))
            self.log.flush()
            self.pending.extend(self.decoder.feed(chunk, time.monotonic() - self.started))
        item = self.pending.popleft()
        if isinstance(item, ProtocolError):
            self.pending.appendleft(item)  # the stream is over: so it stays
            raise item
        return item

    def acknowledge(self, event: str) -> None:
        line = f"mpio-ack {event}\n"
        self.log.write(line)
        self.log.flush()
        with contextlib.suppress(OSError):  # the guest is gone: the next receive says so
            self.child.send(line.encode())


__all__ = ["Channel", "ChannelClosed", "ChannelTimeout", "Message", "ProtocolError"]
