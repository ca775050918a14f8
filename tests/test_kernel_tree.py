"""A real kernel tree: Debian's 6.1 source built minimal, a regression in dm-mpath.c that
the failover scenario must catch, and a bisect that must find it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import last_result, qemu_processes_for, run_cli
from .kernel_tree import BASE, KernelTree, ensure

pytestmark = pytest.mark.integration

# A one-character slip: I/O that failed on one path completes with the error while other
# paths are still valid, instead of being requeued. Failover silently turns into EIO.
GOOD_LINE = "\t\tif (!atomic_read(&m->nr_valid_paths) &&\n"
BAD_LINE = "\t\tif (atomic_read(&m->nr_valid_paths) &&\n"
DM_MPATH = "drivers/md/dm-mpath.c"


@pytest.fixture(scope="module")
def tree() -> Iterator[KernelTree]:
    t = ensure()
    yield t
    t.reset()


def _edit(tree: KernelTree, path: str, old: str, new: str) -> None:
    f = tree.src / path
    text = f.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    f.write_text(text.replace(old, new))


def test_minimal_kernel_catches_a_dm_mpath_regression(tree: KernelTree, tmp_path: Path) -> None:
    p = run_cli("run", "--output-dir", str(tmp_path), env=tree.env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"kernel tree {tree.build}" in p.stderr

    _edit(tree, DM_MPATH, GOOD_LINE, BAD_LINE)
    try:
        tree.make()
        p = run_cli("run", "--output-dir", str(tmp_path), env=tree.env)
        assert p.returncode == 1, p.stdout + p.stderr
        failed = {c["name"] for c in last_result(tmp_path)["checks"] if c["status"] == "FAIL"}
        assert "io_after_pull" in failed
        assert "FAILED io_after_pull" in p.stdout
    finally:
        tree.git("checkout", "-q", "--", DM_MPATH)
    tree.make()
    p = run_cli("run", "--output-dir", str(tmp_path), env=tree.env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert qemu_processes_for(tmp_path) == []


def _commit(tree: KernelTree, message: str) -> str:
    tree.git("commit", "-qam", message)
    return tree.git("rev-parse", "HEAD")


@pytest.fixture
def history(tree: KernelTree) -> Iterator[dict[str, str]]:
    """Eight commits on BASE: harmless ones, one that does not build, one regression."""
    branch = "mpio-bisect-test"
    tree.git("checkout", "-qB", branch, BASE)
    c: dict[str, str] = {}
    _edit(tree, DM_MPATH, " * Fail or reinstate all paths that match the provided struct dm_dev.",
          " * Fail or reinstate every path that matches the provided struct dm_dev.")
    c["comment1"] = _commit(tree, "dm mpath: reword a comment")
    _edit(tree, "drivers/md/dm-rq.c", "#include \"dm-core.h\"",
          "#include \"dm-core.h\"\n/* request-based device-mapper */")
    c["comment2"] = _commit(tree, "dm rq: say what the file is")
    _edit(tree, "drivers/scsi/sd.c", "#include <linux/module.h>",
          "#include <linux/module.h>\n/* SCSI disk driver */")
    c["comment3"] = _commit(tree, "scsi: sd: say what the file is")
    _edit(tree, DM_MPATH, GOOD_LINE, GOOD_LINE.replace("&&", "&& ("))
    c["unbuildable"] = _commit(tree, "dm mpath: start a refactor that does not build")
    _edit(tree, DM_MPATH, GOOD_LINE.replace("&&", "&& ("), GOOD_LINE)
    c["fix_build"] = _commit(tree, "dm mpath: fix the build")
    _edit(tree, DM_MPATH, GOOD_LINE, BAD_LINE)
    c["regression"] = _commit(tree, "dm mpath: simplify the end_io path check")
    _edit(tree, "drivers/md/dm-rq.c", "/* request-based device-mapper */",
          "/* request-based device-mapper core */")
    c["comment4"] = _commit(tree, "dm rq: reword the file comment")
    _edit(tree, DM_MPATH, " * Fail or reinstate every path", " * Fail or reinstate all paths")
    c["bad"] = _commit(tree, "dm mpath: reword the comment back")
    tree.git("checkout", "-q", BASE)
    yield c
    tree.git("checkout", "-qf", BASE)
    tree.git("branch", "-D", branch)


def test_bisect_finds_the_regression_and_skips_what_does_not_build(
        tree: KernelTree, history: dict[str, str], tmp_path: Path) -> None:
    p = run_cli("bisect", "--good", BASE, "--bad", history["bad"], "--output-dir",
                str(tmp_path), env=tree.env, timeout=3000)
    print(p.stdout)  # the bisect log, shown with pytest -rP
    assert p.returncode == 0, p.stdout + p.stderr
    regression = history["regression"][:12]
    assert f"first bad commit: {regression} dm mpath: simplify the end_io path check" \
        in p.stdout
    steps = re.findall(r"^bisect step \d+: ([0-9a-f]{12}) (\w+)", p.stdout, re.M)
    assert (history["unbuildable"][:12], "skip") in steps
    assert (regression, "bad") in steps
    # left as found: on the original branch, no bisect in progress, no changes
    assert tree.git("rev-parse", "--abbrev-ref", "HEAD") == BASE
    assert not (tree.src / ".git" / "BISECT_LOG").exists()
    assert tree.git("status", "--porcelain", "--untracked-files=no") == ""
    assert qemu_processes_for(tmp_path) == []


def test_bisect_refuses_a_dirty_tree(tree: KernelTree, tmp_path: Path) -> None:
    _edit(tree, DM_MPATH, GOOD_LINE, BAD_LINE)
    try:
        p = run_cli("bisect", "--good", BASE, "--bad", BASE, "--output-dir", str(tmp_path),
                    env=tree.env)
    finally:
        tree.git("checkout", "-q", "--", DM_MPATH)
    assert p.returncode == 255
    assert "uncommitted changes" in p.stderr and DM_MPATH in p.stderr
    assert "Traceback" not in p.stderr


def test_kconfig_merges_into_an_existing_config(tree: KernelTree, tmp_path: Path) -> None:
    build = tmp_path / "build"
    env = {"KERNEL_SRC": str(tree.src), "KBUILD_OUTPUT": str(build)}
    p = run_cli("kconfig", env=env)
    assert p.returncode == 255 and "no .config" in p.stderr  # nothing to merge into yet
    assert not build.exists()
    subprocess.run(["make", "-C", str(tree.src), f"O={build}", "defconfig"], check=True,
                   capture_output=True)
    assert "CONFIG_DM_MULTIPATH=y" not in (build / ".config").read_text()
    p = run_cli("kconfig", env=env)
    assert p.returncode == 0, p.stderr
    config = (build / ".config").read_text()
    for option in ("CONFIG_DM_MULTIPATH", "CONFIG_XFS_FS", "CONFIG_SCSI_VIRTIO"):
        assert f"{option}=y" in config
    assert "CONFIG_EXT4_FS=y" in config  # defconfig's own choices stay
    assert tree.git("status", "--porcelain") == ""  # the source tree is untouched
