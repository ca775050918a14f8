"""A newc (SVR4, no CRC) cpio writer that is reproducible byte for byte.

Every entry gets uid/gid 0 and one fixed mtime; entries are written sorted by path, parents
first, so the same inputs always give the same archive. The kernel accepts several such
archives concatenated, which is what makes the image layers possible.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Entry:
    """One archive member; `path` is relative to the archive root, without a leading '/'."""

    path: str
    mode: int  # full st_mode: type bits and permissions
    data: bytes = b""  # body for regular files held in memory, target for symlinks
    source: str | None = None  # host file to stream instead of `data`
    size: int = 0  # size of `source`

    @staticmethod
    def directory(path: str, perm: int = 0o755) -> Entry:
        return Entry(path, stat.S_IFDIR | perm)

    @staticmethod
    def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
        return Entry(path, stat.S_IFREG | perm, data=data)

    @staticmethod
    def host_file(path: str, source: str, perm: int, size: int) -> Entry:
        return Entry(path, stat.S_IFREG | perm, source=source, size=size)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, stat.S_IFLNK | 0o777, data=target.encode())

    @property
    def body_size(self) -> int:
        return self.size if self.source is not None else len(self.data)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, mode: int, nlink: int, mtime: int, size: int, namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, namesize, 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Add a directory entry for every missing parent and sort parents before children."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        by_path[e.path.strip("/")] = dataclasses.replace(e, path=e.path.strip("/"))
    for p in list(by_path):
        for parent in PurePosixPath(p).parents:
            key = str(parent)
            if key != "." and key not in by_path:
                by_path[key] = Entry.directory(key)
    return [by_path[k] for k in sorted(by_path, key=lambda k: k.split("/"))]


def write(out: BinaryIO, entries: Iterable[Entry], mtime: int = 0) -> int:
    """Write entries (parents added, sorted) and the trailer; return the bytes written."""
    written = 0
    for ino, e in enumerate(with_parents(entries), start=1):
        name = e.path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        head = _header(ino, e.mode, nlink, mtime, e.body_size, len(name)) + name
        head += _pad(len(head))
        out.write(head)
        written += len(head)
        written += _write_body(out, e)
    tail = _header(0, 0, 1, 0, 0, len(TRAILER) + 1) + TRAILER.encode() + b"\0"
    tail += _pad(len(tail))
    tail += b"\0" * (-(written + len(tail)) % 512)
    out.write(tail)
    return written + len(tail)


def _write_body(out: BinaryIO, e: Entry) -> int:
    if e.source is None:
        out.write(e.data + _pad(len(e.data)))
        return len(e.data) + len(_pad(len(e.data)))
    copied = 0
    with open(e.source, "rb") as f:
        while chunk := f.read(CHUNK):
            out.write(chunk)
            copied += len(chunk)
    if copied != e.size:
        raise OSError(f"{e.source} changed size while being archived")
    out.write(_pad(copied))
    return copied + len(_pad(copied))
