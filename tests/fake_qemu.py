"""A stand-in QEMU: answers QMP as QEMU does (serve_qmp, for a socket in a test), and, run as
a program with QEMU's command line, plays the guest: on the protocol and QMP sockets the
tool hands it (or that it connects to, for the script by hand), it sends the bytes of the
file named by $FAKE_QEMU_GUEST on the protocol channel, and stays until the tool hangs up or
acknowledges END (then it exits, as QEMU does when init reboots). Only the standard
library: it runs under any Python."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
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


def serve_qmp(sock: socket.socket, replies: dict[str, object]) -> None:
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

    serve(sock, answer)


def chardevs(argv: list[str]) -> dict[str, dict[str, str]]:
    """{chardev id: its fields} from QEMU's -chardev options (",," is a literal comma)."""
    found = {}
    for option, value in zip(argv, argv[1:], strict=False):
        if option == "-chardev":
            fields = dict(f.partition("=")[::2] for f in value.replace(",,", "\0").split(","))
            found[fields["id"]] = {k: v.replace("\0", ",") for k, v in fields.items()}
    return found


def open_socket(fields: dict[str, str]) -> socket.socket:
    """A run hands QEMU its end of a socket pair (fd=N); the script for humans, a path."""
    if "fd" in fields:
        return socket.socket(fileno=int(fields["fd"]))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(fields["path"])
    return sock


def main(argv: list[str]) -> int:
    devices = chardevs(argv)
    open(devices["console"]["path"], "wb").close()  # QEMU creates the console's file at once
    proto, qmp = open_socket(devices["proto"]), open_socket(devices["qmp"])
    threading.Thread(target=serve_qmp, args=(qmp, {"query-status": {"status": "running"}}),
                     daemon=True).start()
    with open(os.environ["FAKE_QEMU_GUEST"], "rb") as f:
        proto.sendall(f.read())
    if os.environ.get("FAKE_QEMU_FLOOD"):  # a guest that talks until the host's disk is full
        while True:
            proto.sendall(b"console noise " * 64 + b"\n")
    acks = b""
    while chunk := proto.recv(65536):  # the host's acknowledgements, until it hangs up
        acks += chunk
        if b"mpio-ack END\n" in acks:  # init's reboot -f; -no-reboot makes it an exit
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
