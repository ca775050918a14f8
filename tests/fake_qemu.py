"""A stand-in QEMU: answers QMP as QEMU does (serve_qmp, for a socket in a test), and, run as
a program with QEMU's command line, plays the guest: it connects to the protocol and QMP
sockets the tool listens on, sends the bytes of the file named by $FAKE_QEMU_GUEST on the
protocol channel, and stays until the tool hangs up or acknowledges END (then it exits, as
QEMU does when init reboots). Only the standard library:
it runs under any Python."""

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


def _chardev_paths(argv: list[str]) -> dict[str, str]:
    """{chardev id: path} from QEMU's -chardev socket|file,id=ID,path=PATH options."""
    found = {}
    for option, value in zip(argv, argv[1:], strict=False):
        if option == "-chardev" and "path=" in value:
            fields = dict(f.partition("=")[::2] for f in value.replace(",,", "\0").split(","))
            found[fields["id"]] = fields["path"].replace("\0", ",")
    return found


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def main(argv: list[str]) -> int:
    paths = _chardev_paths(argv)
    open(paths["console"], "wb").close()  # QEMU creates the console's file at once
    proto, qmp = _connect(paths["proto"]), _connect(paths["qmp"])
    threading.Thread(target=serve_qmp, args=(qmp, {}), daemon=True).start()
    with open(os.environ["FAKE_QEMU_GUEST"], "rb") as f:
        proto.sendall(f.read())
    acks = b""
    while chunk := proto.recv(65536):  # the host's acknowledgements, until it hangs up
        acks += chunk
        if b"mpio-ack END\n" in acks:  # init's reboot -f; -no-reboot makes it an exit
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
