"""A stand-in QEMU whose guest freezes: given as --qemu, it takes QEMU's command line,
takes the run's protocol and QMP sockets as QEMU does (tests/fake_qemu.py), says what init or the
scenario would say up to the freeze, then nothing more. Its monitor still answers, and the
kernel ignores sysrq (unless FROZEN_ANSWERS_SYSRQ=1): the freeze of README, Known problems.

FROZEN_AT: `modules` (init's step, before the scenario) or `scenario` (a step of it).
FROZEN_BOOTS=N and FROZEN_COUNT=FILE: only the first N boots freeze; later ones run the
real QEMU (FROZEN_REAL, default qemu-system-x86_64) with the same command line.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tests.fake_qemu import chardevs, open_socket, serve


def this_boot_freezes() -> bool:
    count_file = os.environ.get("FROZEN_COUNT")
    if count_file is None:
        return True
    path = Path(count_file)
    booted = int(path.read_text()) if path.exists() else 0
    path.write_text(str(booted + 1))
    return booted < int(os.environ.get("FROZEN_BOOTS", "1"))


def serve_qmp(sock: socket.socket, console: Path) -> None:
    """Answers every command with an empty return; a pressed sysrq key prints the task
    dump's header only if the stand-in kernel answers sysrq."""
    def answer(request: dict[str, Any]) -> list[dict[str, Any]]:
        if request["execute"] == "send-key" and os.environ.get("FROZEN_ANSWERS_SYSRQ"):
            with open(console, "a") as f:
                f.write("[   61.000000] sysrq: Show Blocked State\n"
                        "[   61.000001] task:insmod state:D\n")
        return [{"return": {}, "id": request.get("id")}]

    serve(sock, answer)


def main() -> None:
    argv = sys.argv[1:]
    if not this_boot_freezes():
        real = os.environ.get("FROZEN_REAL", "qemu-system-x86_64")
        os.execvp(real, [real, *argv])
    devices = chardevs(argv)
    console = Path(devices["console"]["path"])
    scenario = "failover"
    lines = [f"START {scenario} 0.90", "STEP modules 1"]
    if os.environ.get("FROZEN_AT") == "scenario":
        lines = [f"START {scenario} 0.90", "STEP modules 60", "STEP udev 60",
                 f"SCENARIO {scenario}", "STEP fault 1"]
    console.write_text("[    0.000000] Linux version 6.1.0 (a stand-in kernel that freezes)\n"
                       + "".join(f"@@MPIO:{ln}\n" for ln in lines)
                       + "[    2.720000] sd 0:0:1:11: [sdar] Attached SCSI disk\n")
    proto, qmp = open_socket(devices["proto"]), open_socket(devices["qmp"])
    proto.sendall("".join(f"@@MPIO:{ln}\n" for ln in lines).encode())
    serve_qmp(qmp, console)  # until the host closes the monitor
    time.sleep(3600)  # frozen: only SIGTERM or SIGKILL ends it, as it ends QEMU


if __name__ == "__main__":
    main()
