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


def serve_qmp(sock: socket.socket, replies: dict[str, object]) -> None:
    """Greets, then answers each command from `replies` (a dict with "error" is an error),
    and sends DEVICE_DELETED after device_del, as QEMU does. Requests come without a
    newline, so the stream is split by the JSON decoder."""
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
            name, rid = request["execute"], request.get("id")
            answer = replies.get(name, {})
            reply = ({"error": answer["error"]} if isinstance(answer, dict) and "error" in answer
                     else {"return": answer})
            sock.sendall(json.dumps({**reply, "id": rid}).encode() + b"\n")
            if name == "device_del":
                event = {"event": "DEVICE_DELETED",
                         "data": {"device": request["arguments"]["id"]},
                         "timestamp": {"seconds": 0, "microseconds": 0}}
                sock.sendall(json.dumps(event).encode() + b"\n")


def _chardevs(argv: list[str]) -> dict[str, dict[str, str]]:
    """{chardev id: its fields} from QEMU's -chardev options (",," is a literal comma)."""
    found = {}
    for option, value in zip(argv, argv[1:], strict=False):
        if option == "-chardev":
            fields = dict(f.partition("=")[::2] for f in value.replace(",,", "\0").split(","))
            found[fields["id"]] = {k: v.replace("\0", ",") for k, v in fields.items()}
    return found


def _socket(fields: dict[str, str]) -> socket.socket:
    """A run hands QEMU its end of a socket pair (fd=N); the script for humans, a path."""
    if "fd" in fields:
        return socket.socket(fileno=int(fields["fd"]))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(fields["path"])
    return sock


def main(argv: list[str]) -> int:
    chardevs = _chardevs(argv)
    open(chardevs["console"]["path"], "wb").close()  # QEMU creates the console's file at once
    proto, qmp = _socket(chardevs["proto"]), _socket(chardevs["qmp"])
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
