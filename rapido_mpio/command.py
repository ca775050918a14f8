"""The one place that runs host tools (apt-get, dpkg-deb, depmod, make, git, zstd), all
through the `sh` package. QEMU is the exception: vm.py starts it with Popen, since it owns
the VM's process group and ends it by PID on every way out."""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from rapido_mpio.errors import MpioError, SetupError


def require(tool: str, package: str) -> str:
    """Absolute path of `tool`, or a SetupError naming the Debian package to install."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        raise SetupError(f"{tool} is not installed.",
                         hint=f"Install it: apt-get install {package}.")
    return path


def run(argv: list[str], *, cwd: Path | None = None, error: MpioError | None = None,
        stdin: bytes | None = None) -> str:
    """Run argv, return its stdout; on failure raise `error` with the tool's last words."""
    import sh  # imports asyncio: ~50 ms that a warm cut does not need

    # SIGINT/SIGTERM held back while sh forks: one that fell between the fork and our
    # handle on the child would leave the tool running; the child gets the old mask back
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    def in_child() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)

    try:
        running: Any = sh.Command(argv[0])(
            *argv[1:], _cwd=str(cwd) if cwd else None, _in=stdin, _tty_out=False, _bg=True,
            _bg_exc=False, _preexec_fn=in_child)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # an interrupt held back lands here
        running.wait()
    except sh.ErrorReturnCode as e:
        detail = (e.stderr or e.stdout or b"").decode(errors="replace").strip().splitlines()
        last = detail[-1] if detail else f"exit code {e.exit_code}"
        if error is None:
            raise SetupError(f"{Path(argv[0]).name} failed: {last}") from None
        error.message = f"{error.message} ({Path(argv[0]).name}: {last})"
        raise error from None
    except BaseException:  # SIGTERM/SIGINT (KeyboardInterrupt): the caller's cleanup
        _stop(running)     # removes what the tool writes, so the tool must not write on
        raise
    return str(running)


def _stop(running: Any) -> None:
    with contextlib.suppress(Exception):  # it may have ended meanwhile
        running.terminate()
        for _ in range(50):
            if not running.process.is_alive()[0]:
                return
            time.sleep(0.1)
        running.kill()


def run_to_file(argv: list[str], log: Path) -> int:
    """Run argv with its output in `log`; return the exit code (a failed build is data)."""
    import sh

    with open(log, "w") as out:
        done = sh.Command(argv[0])(*argv[1:], _out=out, _err_to_out=True, _tty_out=False,
                                   _return_cmd=True, _ok_code=list(range(256)))
    return int(done.exit_code)
