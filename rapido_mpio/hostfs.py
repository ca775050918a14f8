"""The host file systems a run writes to: room for it before boot, and one sentence naming
the file system when one fills up (or turns read-only) during the run.

A full disk on the host must never come out as a verdict: the guest sees it as I/O that
stalls or fails, which looks exactly like a dm-multipath regression.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rapido_mpio.errors import SetupError

MIB = 1 << 20
# what a full or read-only file system raises; anything else is not the host's room
NO_ROOM = {errno.ENOSPC: "is full", errno.EDQUOT: "is over its quota",
           errno.EROFS: "is read-only", errno.EFBIG: "refuses a file that large"}


@dataclasses.dataclass(frozen=True)
class Room:
    """The file system a path is on, and what is left of it for us."""

    mount: Path  # its mount point
    free: int  # bytes an unprivileged writer may still use

    @staticmethod
    def of(path: Path) -> Room:
        existing = _existing(path)
        st = os.statvfs(existing)
        return Room(_mount_point(existing), st.f_bavail * st.f_frsize)

    def __str__(self) -> str:
        return f"the file system at {self.mount} ({human_size(self.free)} free)"


def human_size(size: int) -> str:
    """A size as a human reads it: 320.0 MiB, or 64 KiB for what is left of a full disk."""
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size // 1024} KiB"


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a run writes, and what to tell the user to do when it cannot."""

    path: Path
    what: str  # "the run's result" / "the run's scratch files (LUNs, initrd)"
    fix: str  # one sentence: how to point the run elsewhere

    @staticmethod
    def cache(path: Path) -> Place:
        return Place(path, "the cache's files",
                     "Free some space there, or choose another with --cache-dir.")

    @staticmethod
    def output(path: Path) -> Place:
        return Place(path, "the run's result",
                     "Free some space there, or choose another --output-dir.")

    @staticmethod
    def scratch() -> Place:
        """Where runs make their scratch directories: TMPDIR (or /tmp)."""
        return Place(Path(tempfile.gettempdir()), "the run's scratch files (LUNs, initrd)",
                     "Free some space there, or set TMPDIR to another file system.")


def check_room(place: Place, need: int, why: str) -> None:
    """Refuse, before anything boots, to start a run the file system has no room for."""
    room = Room.of(place.path)
    if room.free < need:
        raise SetupError(f"The file system at {room.mount} has {human_size(room.free)} free, "
                         f"too little for {place.what} in {place.path}: a run needs "
                         f"{human_size(need)} there ({why}).", hint=place.fix)


@contextlib.contextmanager
def writes_to(*places: Place) -> Iterator[None]:
    """A write that fails for want of room (or on a read-only file system) is a setup error
    naming the file system, never a traceback or a verdict."""
    try:
        yield
    except OSError as e:
        problem = NO_ROOM.get(e.errno or 0)
        if problem is None:
            raise
        place = _place_of(e, places)
        raise SetupError(f"Cannot write {place.what} in {place.path}: "
                         f"{Room.of(place.path)} {problem}.", hint=place.fix) from None


def _place_of(e: OSError, places: tuple[Place, ...]) -> Place:
    """The place the failed write was in: by the file it names, else (a write to an open
    file names none) the one with the least room."""
    if e.filename is not None:
        failed = Path(os.fsdecode(e.filename)).absolute()
        for p in places:
            if failed.is_relative_to(p.path.absolute()):
                return p
    return min(places, key=lambda p: Room.of(p.path).free)


def _existing(path: Path) -> Path:
    """The path, or its nearest existing parent (a directory not created yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path
