"""Writing files that others read: a unique temp file beside the target, moved over it
atomically, removed on every way out; a full disk is one sentence (hostfs), not a traceback.

Concurrent cuts share the cache and the output directory, so no temp name is fixed and none
is opened through a link someone planted (mkstemp creates it with O_EXCL). SIGTERM and
SIGINT arrive as KeyboardInterrupt (cli.py), so `finally` removes the temp file then too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from rapido_mpio.hostfs import Place, writes_to

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def temp_beside(target: Path, suffix: str = "") -> Iterator[Path]:
    """A new empty file in target's directory, gone when the block ends unless it was moved
    (os.replace) over the target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=suffix)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def link_atomic(link: Path, target: str) -> None:
    """link points at target, replaced in one step: a reader sees the old link or the new
    one, never none (unlink-then-symlink left a moment without)."""
    with temp_beside(link) as tmp:
        tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)


def write_atomic(path: Path, data: bytes, place: Place | None = None) -> None:
    """path holds either its old content or `data`, never a part, whoever writes at once.
    `place` says what a full disk there means (default: the cache)."""
    with writes_to(place or Place.cache(path.parent)), temp_beside(path) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)


# --- copying ---------------------------------------------------------------------------------


def _read_write(src: int, dst: int, count: int) -> int:
    chunk = os.read(src, min(count, 1 << 20))
    view = memoryview(chunk)
    while view:
        view = view[os.write(dst, view):]
    return len(chunk)


def _sendfile(src: int, dst: int, count: int) -> int:
    return os.sendfile(dst, src, None, count)


# copy_file_range refuses to cross file systems (EXDEV: a cache on disk, TMPDIR on tmpfs)
# and some file systems do not have it; sendfile then, and plain reads and writes last
_NOT_HERE = (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF,
             errno.EPERM)


def copy(src: int, dst: int, size: int) -> None:
    """`size` bytes from src's offset to dst's, in the kernel where it can."""
    copiers: list[Callable[[int, int, int], int]] = [os.copy_file_range, _sendfile,
                                                     _read_write]
    while size > 0:
        try:
            done = copiers[0](src, dst, size)
        except OSError as e:
            if e.errno not in _NOT_HERE or len(copiers) == 1:
                raise
            copiers.pop(0)
            continue
        if done == 0:
            raise OSError(f"file shrank while being copied ({size} bytes short)")
        size -= done
