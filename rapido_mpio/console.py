"""The guest's protocol channel (its ttyS1): @@MPIO: lines out, acknowledgements in.

The kernel console (ttyS0) goes to a file and is only scanned afterwards; keeping the
protocol off it means no kernel message can ever split a marker line. What the guest sends
is decoded by protocol.py; this module only moves the bytes, and logs them as they come
(protocol.log, which the matrix's live view reads).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import socket
import time
from typing import TextIO

from rapido_mpio.protocol import Decoder, Message, ProtocolError

CHUNK = 65536
SEND_TIMEOUT = 10.0


class ChannelClosed(Exception):
    """The guest side is gone: QEMU exited (panic=-1 and -no-reboot make a panic an exit)."""


class ChannelTimeout(Exception):
    pass


class Channel:
    def __init__(self, sock: socket.socket, started: float, log: TextIO) -> None:
        self.sock = sock
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
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(CHUNK)
            except TimeoutError:
                raise ChannelTimeout() from None
            except OSError:  # reset: QEMU died
                raise ChannelClosed() from None
            if not chunk:
                raise ChannelClosed()
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
        self.sock.settimeout(SEND_TIMEOUT)
        with contextlib.suppress(OSError):  # the guest is gone: the next receive says so
            self.sock.sendall(line.encode())


__all__ = ["Channel", "ChannelClosed", "ChannelTimeout", "Message", "ProtocolError"]
