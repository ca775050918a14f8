"""What a run starts on the host ends with the run, even when the run is killed with
SIGKILL: its child processes (QEMU, a matrix's children) and its scratch directory.

A child is tied to its parent by the parent-death signal, which the kernel sends however the
parent ends. A scratch directory carries a lock its owner holds for as long as it lives; the
kernel drops the lock when the owner dies, so the next run can tell a dead run's scratch from
a live one's and remove only the dead.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from rapido_mpio.errors import SetupError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SCRATCH_PREFIX = "rapido-mpio-"
LOCK = "owner.lock"  # present only once locked: renamed into place after flock
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
STOP_GRACE = 15.0  # seconds a child gets to end its QEMU after SIGTERM, then SIGKILL

_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child


def spawn(argv: list[str], death_signal: signal.Signals, **popen: Any) -> subprocess.Popen[bytes]:
    """Popen whose child gets `death_signal` when this process dies, by any signal.

    The kernel sends it when the thread that forked exits: every caller waits for its child
    before it returns, so that thread outlives the child except when the process dies."""
    parent = os.getpid()
    return subprocess.Popen(argv, preexec_fn=lambda: tie_to_parent(parent, death_signal),
                            **popen)


def tie_to_parent(parent: int, death_signal: signal.Signals) -> None:
    """In a forked child: `death_signal` when `parent` dies, and now if it already has."""
    _prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl: no signal will come
        os.kill(os.getpid(), death_signal)
        os._exit(1)  # a death signal the child ignores: it must not run on


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then act as they would have: no
    interrupt between starting a process and registering its cleanup, or inside a cleanup.
    Python runs signal handlers in the main thread only, so elsewhere there is nothing to
    defer."""
    caught: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    try:
        previous = {sig: signal.signal(sig, note) for sig in INTERRUPTS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():  # None: not set from Python, so the default
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)  # its own handler now: raises, ignores or ends


@contextlib.contextmanager
def scratch_dir(parent: Path | None = None) -> Iterator[Path]:
    """A private directory under `parent` (TMPDIR), locked for as long as this process
    lives and removed at the end. The scratch of dead runs is removed first."""
    parent = Path(parent or tempfile.gettempdir())
    remove_dead_scratch(parent)
    fd = -1
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=parent))
        fd = os.open(path / f".{LOCK}.new", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(path / f".{LOCK}.new", path / LOCK)  # never seen unlocked by another run
    except OSError as e:
        if fd >= 0:
            os.close(fd)
            shutil.rmtree(path, ignore_errors=True)
        raise SetupError(f"Cannot make a locked scratch directory in {parent}: "
                         f"{e.strerror or e}.",
                         hint="Point TMPDIR at a writable local file system.") from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def remove_dead_scratch(parent: Path) -> list[Path]:
    """Remove each scratch directory whose owner has died (its lock is free); keep the
    live ones, and any whose lock is not in place (being created, or not ours)."""
    removed = []
    for path in parent.glob(f"{SCRATCH_PREFIX}*"):
        try:
            if path.is_symlink() or path.lstat().st_uid != os.getuid():
                continue
            fd = os.open(path / LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:  # gone, not ours, or its lock not in place yet
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its owner lives
            os.close(fd)
            continue
        try:  # held while removing: two runs cleaning up at once do not race
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed

