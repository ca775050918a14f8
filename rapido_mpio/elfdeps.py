"""Shared-library closure of host ELF files, read from the files themselves (no ldd).

Only what the dynamic loader would look for: PT_INTERP, DT_NEEDED, DT_RUNPATH/DT_RPATH and
the Debian multiarch default directories. Libraries loaded with dlopen() are invisible here;
the image manifest lists those.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

DEFAULT_LIBDIRS: tuple[str, ...] = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/lib",
)


@dataclasses.dataclass(frozen=True)
class ElfInfo:
    interpreter: str | None
    needed: tuple[str, ...]
    search_path: tuple[str, ...]  # DT_RUNPATH / DT_RPATH, $ORIGIN expanded


class MissingLibrary(Exception):
    def __init__(self, library: str, needed_by: str) -> None:
        super().__init__(f"{needed_by} needs {library}, which is not on this host")
        self.library = library
        self.needed_by = needed_by


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def read(path: str) -> ElfInfo:
    # imported here: only a cache miss of the base layer reads ELF files
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        interp = None
        needed: list[str] = []
        search: list[str] = []
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()  # type: ignore[attr-defined]
        for section in elf.iter_sections():
            if not isinstance(section, DynamicSection):
                continue
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)  # type: ignore[attr-defined]
                elif tag.entry.d_tag == "DT_RUNPATH":
                    search += tag.runpath.split(":")  # type: ignore[attr-defined]
                elif tag.entry.d_tag == "DT_RPATH":
                    search += tag.rpath.split(":")  # type: ignore[attr-defined]
    origin = os.path.dirname(os.path.realpath(path))
    search = [s.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for s in search if s]
    return ElfInfo(interp, tuple(needed), tuple(search))


def find_library(name: str, search_path: Sequence[str]) -> str | None:
    for d in (*search_path, *DEFAULT_LIBDIRS):
        candidate = os.path.join(d, name)
        if os.path.exists(candidate):
            return candidate
    return None


def closure(roots: Iterable[str]) -> list[str]:
    """Every ELF root plus the libraries and interpreters they need, transitively.

    Paths are returned as the loader would name them (not resolved through symlinks), in
    discovery order, without duplicates. Non-ELF roots (scripts) are returned as they are.
    """
    from elftools.common.exceptions import ELFError

    seen: dict[str, None] = {}
    todo = list(roots)
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen[path] = None
        if not is_elf(path):
            continue
        try:
            info = read(path)
        except ELFError:
            continue
        if info.interpreter:
            todo.append(info.interpreter)
        for lib in info.needed:
            found = find_library(lib, info.search_path)
            if found is None:
                raise MissingLibrary(lib, path)
            todo.append(found)
    return list(seen)
