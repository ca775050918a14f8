"""The cache's layers, bounded in size: past the bound the least recently used go.

Every bisect step adds a modules layer and every package upgrade a base layer; without a
bound they pile up for good. A layer's mtime says when a cut or a boot last used it. One
used within the grace period is kept whatever the bound: a matrix cuts all its kernels
before booting any, and another cut may be about to boot what it just found.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from rapido_mpio.files import TEMP_PREFIX

LAYERS_BOUND = 2 << 30  # bytes; a base layer is ~20 MB, a modules layer 5-10 MB
GRACE_SECONDS = 3600.0


def used(layer: Path) -> None:
    """Mark a layer as just used (its mtime), so eviction takes it last."""
    with contextlib.suppress(OSError):  # a read-only cache still boots; only evicted sooner
        os.utime(layer)


def evict(layers_dir: Path, keep: Iterable[Path], bound: int = LAYERS_BOUND,
          grace: float = GRACE_SECONDS) -> list[Path]:
    """Remove the least recently used layers until the rest fit in `bound` bytes; never
    one in `keep` or one used within `grace` seconds. Temp files older than that are left
    by a cut killed with SIGKILL: they go too. Returns what went."""
    kept = {p.resolve() for p in keep}
    recent = time.time() - grace
    layers = []
    gone = []
    if not layers_dir.is_dir():  # nothing cached yet
        return []
    for entry in os.scandir(layers_dir):
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # a concurrent cut evicted it first
            continue
        if entry.name.startswith(TEMP_PREFIX):
            if st.st_mtime < recent:
                Path(entry.path).unlink(missing_ok=True)
                gone.append(Path(entry.path))
        elif entry.is_file(follow_symlinks=False):
            layers.append((st.st_mtime, st.st_size, Path(entry.path)))
    total = sum(size for _, size, _ in layers)
    for mtime, size, path in sorted(layers):  # oldest first
        if total <= bound:
            break
        if mtime >= recent or path.resolve() in kept:
            continue
        path.unlink(missing_ok=True)
        total -= size
        gone.append(path)
    return gone
