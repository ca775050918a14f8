"""A stand-in for QEMU's side of QMP, for the monitor's tests and the stand-in QEMU."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any


def serve(sock: socket.socket, answer: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """Greets as QEMU 7.2 does, then sends what `answer` makes of each request: its reply,
    and any events after it. Requests come without a newline, so the stream is split by
    the JSON decoder. Returns when the client closes."""
    sock.sendall(b'{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, '
                 b'"package": ""}, "capabilities": ["oob"]}}\n')
    decoder, buf = json.JSONDecoder(), ""
    while chunk := sock.recv(65536):
        buf += chunk.decode()
        while buf.strip():
            try:
                request, end = decoder.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            for message in answer(request):
                sock.sendall(json.dumps(message).encode() + b"\n")
