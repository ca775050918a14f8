"""A build of the user's kernel tree that counts coverage of dm-multipath with gcov, made in
the cache: the user's own tree and build are only read. A build that already counts those
files (the user built it with gcov) is used as it is.

An out-of-tree build (O=) gets a build directory of its own in the cache, started as a copy
of the user's and kept between runs, so that make rebuilds only what changed since. (The
first build compiles nearly everything all the same: CONFIG_GCOV_KERNEL reaches every file
through compiler_types.h, and objtool is rebuilt for its new path, which every object
depends on.) A tree built in place cannot take O= (kbuild refuses
a source tree that holds a .config), so it is copied whole and built in the copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rapido_mpio import command, kbuild
from rapido_mpio.config import Config
from rapido_mpio.errors import SetupError
from rapido_mpio.kernel import FRAGMENT, build_dir, read_config

# what gcov counts: dm-multipath's target, its selector registry and every path selector
# the tree has (a glob, so a selector added after 6.1 is counted too)
COUNTED = ("drivers/md/dm-mpath.c", "drivers/md/dm-path-selector.c", "drivers/md/dm-ps-*.c")
GCOV_FRAGMENT = FRAGMENT.parent / "gcov.config"


@dataclasses.dataclass(frozen=True)
class GcovBuild:
    src: Path    # the source the build was compiled from (the user's, or the copy)
    build: Path  # its build directory: .gcno beside each counted object
    counted: tuple[str, ...]  # the counted sources, relative to src
    seconds: float


def counted_sources(src: Path) -> tuple[str, ...]:
    return tuple(sorted(str(p.relative_to(src)) for pattern in COUNTED
                        for p in src.glob(pattern)))


def ensure(cfg: Config, log: TextIO = sys.stderr) -> GcovBuild:
    """The gcov build of cfg's tree, made or brought up to date."""
    build = build_dir(cfg)
    src = (cfg.kernel_src or build / "source").resolve()
    user = kbuild.Tree(src, build)
    counted = counted_sources(src)
    if "drivers/md/dm-mpath.c" not in counted:
        raise SetupError(f"{src} has no drivers/md/dm-mpath.c to count coverage of.",
                         hint="Point KERNEL_SRC at a Linux source tree.")
    if not (build / "arch/x86/boot/bzImage").is_file():
        raise SetupError(f"Kernel tree {build} is not built (no arch/x86/boot/bzImage).",
                         hint="Build it first: coverage starts from your build.")
    if counting(build, counted):
        print(f"rapido-mpio: {build} already counts {', '.join(counted)} with gcov: used as "
              "it is", file=log)
        return GcovBuild(src, build, counted, 0.0)
    command.require("make", "make")
    key = hashlib.sha256(f"{src}\0{build.resolve()}".encode()).hexdigest()[:16]
    root = cfg.cache_dir / "coverage" / key
    root.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with _locked(root / ".lock"):
        if user.out_of_tree:
            target = kbuild.Tree(src, root / "build")
            if not (target.build / ".complete").exists():
                _copy(build, target.build)
        else:  # the copy holds the user's objects too, so it is an incremental build
            target = kbuild.Tree(root / "src", root / "src")
            _copy(src, target.src)
        print(f"rapido-mpio: building {build} with gcov on {', '.join(counted)} in "
              f"{target.build}", file=log)
        shutil.copyfile(build / ".config", target.build / ".config")
        made = root / "build.log"
        # debugfs (where the counters are read) and gcov, merged as `kconfig` merges
        at = cfg.replace(kernel_src=target.src, kernel_build=target.build)
        kbuild.kconfig(at, minimal=False, fragment=GCOV_FRAGMENT)
        built = kbuild.build(at, made, extra=profile_args(counted))
        if not built.ok:
            raise SetupError(f"The gcov build of {build} failed.",
                             hint=f"See {made}; the tree itself builds without gcov?")
        (target.build / ".complete").write_text("")
    missing = [c for c in counted
               if not (target.build / Path(c).with_suffix(".gcno")).is_file()]
    if missing:
        raise SetupError(f"The gcov build has no counters for {', '.join(missing)}.",
                         hint="Is CONFIG_DM_MULTIPATH (and its selectors) enabled in "
                         f"{build / '.config'}?")
    return GcovBuild(target.src, target.build, counted, time.monotonic() - began)


def profile_args(counted: tuple[str, ...]) -> tuple[str, ...]:
    """make's command-line variables that build each counted file with gcov."""
    return tuple(f"GCOV_PROFILE_{Path(c).stem}.o=y" for c in counted)


def counting(build: Path, counted: tuple[str, ...]) -> bool:
    """Whether the build already counts every file: gcov and debugfs on, and each object
    compiled with its .gcno (an object rebuilt since without GCOV_PROFILE is newer)."""
    config = read_config(build / ".config")
    if config.get("CONFIG_GCOV_KERNEL") != "y" or config.get("CONFIG_DEBUG_FS") != "y":
        return False
    for c in counted:
        obj, gcno = build / Path(c).with_suffix(".o"), build / Path(c).with_suffix(".gcno")
        if not obj.is_file() or not gcno.is_file() or \
                obj.stat().st_mtime > gcno.stat().st_mtime + 1:
            return False
    return True


def _copy(source: Path, dest: Path) -> None:
    """dest becomes a copy of source (times kept, so make sees what is new), whole or not at
    all: a copy cut short is removed before the next."""
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command.run(["cp", "-a", f"{source}/.", str(partial)],
                error=SetupError(f"Cannot copy {source} into the cache for the gcov build."))
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One gcov build of a tree at a time; a second run waits for the first."""
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
