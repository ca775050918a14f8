"""A real kernel tree for the tests: Debian's linux-source-6.1 as a git repository, built
minimal with kconfig/mpio.config (and tests/data/test-kernel.config), cached between test
runs.

The cache is keyed by the source package's version and the fragment's content, so CI pays
the ~5 minute untar, git and build once per machine. Location: $RAPIDO_MPIO_TEST_KERNELS,
else ~/.cache/rapido-mpio/test-kernels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rapido_mpio import kbuild
from rapido_mpio.config import load
from rapido_mpio.gcovbuild import counted_sources, profile_args
from rapido_mpio.kernel import FRAGMENT

TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
TEST_FRAGMENT = Path(__file__).resolve().parent / "data" / "test-kernel.config"
BASE = "mpio-base"  # the branch holding the unmodified source
GIT_ENV = {
    "GIT_AUTHOR_NAME": "rapido-mpio tests", "GIT_AUTHOR_EMAIL": "tests@rapido-mpio.invalid",
    "GIT_COMMITTER_NAME": "rapido-mpio tests",
    "GIT_COMMITTER_EMAIL": "tests@rapido-mpio.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}


@dataclasses.dataclass(frozen=True)
class KernelTree:
    src: Path
    build: Path

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.src), *args], check=True, text=True,
                              capture_output=True, env={**os.environ, **GIT_ENV}).stdout.strip()

    def make(self) -> None:
        """Incremental build of what is checked out; raises if it does not build. The files
        `matrix --coverage` counts are built with gcov, so that it uses this build as is."""
        profile = profile_args(counted_sources(self.src))
        subprocess.run(["make", "-C", str(self.src), f"O={self.build}", f"-j{os.cpu_count()}",
                        "bzImage", *profile], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def reset(self) -> None:
        """Back to the unmodified base, clean, and built."""
        self.git("checkout", "-qf", BASE)
        self.git("clean", "-fdq")
        self.make()

    @property
    def env(self) -> dict[str, str]:
        return {"KERNEL_SRC": str(self.src), "KBUILD_OUTPUT": str(self.build)}


def cache_root() -> Path:
    explicit = os.environ.get("RAPIDO_MPIO_TEST_KERNELS")
    if explicit:
        return Path(explicit)
    return load({}, environ={}).cache_dir / "test-kernels"


def source_version() -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", "linux-source-6.1"],
                          check=True, capture_output=True, text=True).stdout.strip()


def ensure() -> KernelTree:
    """The cached tree, made (untar, git, kconfig --minimal, build) if it is not there."""
    key = hashlib.sha256(FRAGMENT.read_bytes() + TEST_FRAGMENT.read_bytes()).hexdigest()[:10]
    root = cache_root() / f"linux-source-6.1_{source_version()}-{key}"
    tree = KernelTree(root / "src", root / "build")
    if (root / ".complete").exists():
        tree.reset()
        return tree
    for stale in root.parent.glob("linux-source-6.1_*"):  # other versions or fragments
        shutil.rmtree(stale, ignore_errors=True)
    root.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        subprocess.run(["tar", "-xf", str(TARBALL), "-C", tmp], check=True)
        (unpacked,) = Path(tmp).iterdir()
        unpacked.rename(tree.src)
    tree.git("init", "-q", "-b", BASE)
    tree.git("add", "-A", "--force")  # Debian's tarball ignores everything (/*)
    tree.git("commit", "-q", "-m", f"linux-source-6.1 {source_version()}")
    cfg = load({"kernel_src": str(tree.src), "kernel_build": str(tree.build)}, environ={})
    kbuild.kconfig(cfg, minimal=True)
    kbuild.kconfig(cfg, minimal=False, fragment=TEST_FRAGMENT)
    tree.make()
    (root / ".complete").write_text("")
    return tree
