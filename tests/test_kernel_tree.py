"""A real kernel tree: Debian's 6.1 source built minimal, a regression in dm-mpath.c that
the failover scenario must catch, and a bisect that must find it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rapido_mpio.config import REPO_ROOT

from .conftest import (
    TEST_SCENARIOS,
    cut_dir_with_test_scenarios,
    last_result,
    qemu_processes_for,
    run_cli,
)
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
        assert "io_after_fault" in failed
        assert "FAILED io_after_fault" in p.stdout
    finally:
        tree.git("checkout", "-q", "--", DM_MPATH)
    tree.make()
    p = run_cli("run", "--output-dir", str(tmp_path), env=tree.env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert qemu_processes_for(tmp_path) == []


def test_run_and_make_from_the_tree_you_stand_in(tree: KernelTree, tmp_path: Path) -> None:
    """As vng does: no --kernel-src, the tree in the current directory is the one tested,
    and nothing is written into it."""
    p = run_cli("run", "--output-dir", str(tmp_path / "run"), cwd=tree.build)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"kernel tree {tree.build}" in p.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDO_MPIO_")
           and k not in ("KERNEL_SRC", "KBUILD_OUTPUT")}
    made = subprocess.run(["make", "-f", str(REPO_ROOT / "Makefile"), "mpio-cut", "mpio-boot"],
                          cwd=tree.build, capture_output=True, text=True, timeout=600,
                          env={**env, "RAPIDO_MPIO_OUTPUT_DIR": str(tmp_path / "make")})
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"kernel tree {tree.build}" in made.stderr and "failover: PASS" in made.stdout
    assert not list(tree.build.glob("mpio-out*"))
    assert tree.git("status", "--porcelain") == ""


PATCHES = Path(__file__).resolve().parent / "patches"


def built_with(tree: KernelTree, *patches: str) -> Iterator[None]:
    """The tree built with `patches` (files of tests/patches/, all on dm-mpath.c) applied,
    for the length of a fixture; then put back and built again."""
    for patch in patches:
        tree.git("apply", str(PATCHES / patch))
    try:
        tree.make()
        yield
    finally:
        tree.git("checkout", "-q", "--", DM_MPATH)
        tree.make()


@pytest.fixture
def keeps_selecting_failed_path(tree: KernelTree) -> Iterator[None]:
    """The tree built with a dm-mpath that keeps sending I/O to a failed path."""
    yield from built_with(tree, "dm-mpath-keep-selecting-failed-path.patch")


def test_per_path_accounting_catches_io_sent_to_a_failed_path(
        tree: KernelTree, keeps_selecting_failed_path: None, tmp_path: Path) -> None:
    """Every other check PASSes such a kernel (the data does arrive); path_io alone FAILs
    it, under the host's drive_del and the guest's offline alike, and under each selector
    the matrix file lists (not historical-service-time: see the file). One matrix, so the
    regression is seen the way a user runs the matrix."""
    p = run_cli("matrix", str(REPO_ROOT / "tests/matrices/regression.yaml"),
                "--output-dir", str(tmp_path), env=tree.env, timeout=900)
    assert p.returncode == 1, p.stdout + p.stderr
    combos = json.loads((tmp_path / "matrix.json").read_text())["combinations"]
    failover = [c for c in combos if c["scenario"] == "failover" and c["result"] != "SKIPPED"]
    assert len(failover) == 4, combos
    for c in failover:
        assert c["result"] == "FAIL", c
        failed = [k for k in c["checks"] if k["status"] != "PASS"]
        assert [k["name"] for k in failed] == ["path_io"], (c["id"], c["checks"])
        assert re.search(r"down_path_8:\d+_got_\d+_\(max_2\)", failed[0]["observed"])
    (control,) = [c for c in combos if c["scenario"] == "all-paths-lost"]
    assert control["negative_control"]["as_declared"] is True
    assert qemu_processes_for(tmp_path) == []


# Regressions each caught by one scenario's own checks; they touch different functions of
# dm-mpath.c and different scenarios, so one build carries them all (a build and its undo
# are most of such a test's time). Per scenario: the checks that must FAIL, and the others
# that may (those that judge the same thing from another side); any other check must PASS.
GROUP_CHECKS = {"prio_groups", "active_group", "group_io", "failback", "io_follows_failback"}
CAUGHT: dict[str, dict[str, tuple[set[str], set[str]]]] = {
    # switch_pg_num() off by one: the kernel goes to the wrong group on a switch, asked for
    # by hand or by multipathd's failback
    "dm-mpath-switch-group-off-by-one.patch": {
        "switchgroup": (set(), {f"{kind}_{i}" for kind in ("switch", "io") for i in (1, 2, 3)}),
        "failback-online": (set(), GROUP_CHECKS),
    },
    # a standby path's failure moves I/O to another group
    "dm-mpath-standby-failure-moves-group.patch": {
        "failover-standby": ({"active_group", "group_io"}, set()),
    },
    # every error is a path error: a target error fails every path, and the writer then
    # gets EIO (no path left) instead of the LUN's own error
    "dm-mpath-every-error-fails-the-path.patch": {
        "target-error": ({"no_path_failed"}, {"target_error_enospc", "target_error_enodata"}),
    },
    # a disabled group keeps the I/O: dm does not choose again after disable_group
    "dm-mpath-bypass-keeps-the-group.patch": {
        "disable-group": ({"group_moved", "io_moved"}, set()),
    },
    # bio-based maps only: a bio that failed on one path gets its error while others are left
    "dm-mpath-bio-error-with-paths-left.patch": {
        "failover-bio": ({"io_after_fault"}, {"data_intact", "path_io"}),
    },
    # the queueing timeout fires, and leaves the map queueing
    "dm-mpath-nopath-timeout-keeps-queueing.patch": {
        "all-paths-down-timeout": ({"writer_failed"}, {"fs_shutdown"}),
    },
}


@pytest.fixture
def regressions(tree: KernelTree) -> Iterator[None]:
    """The tree built with every patch of CAUGHT applied."""
    yield from built_with(tree, *CAUGHT)


def test_each_regression_fails_only_the_checks_made_for_it(
        tree: KernelTree, regressions: None, tmp_path: Path) -> None:
    """Each scenario FAILs, on the checks that judge what its regression broke, whatever
    order udev found the paths in (the faults are aimed by role); failover, which none of
    them touches, still PASSes. The observed values say what happened."""
    p = run_cli("matrix", str(REPO_ROOT / "tests/matrices/caught.yaml"),
                "--output-dir", str(tmp_path), env=tree.env, timeout=1200)
    assert p.returncode == 1, p.stdout + p.stderr
    combos = {c["scenario"]: c for c in
              json.loads((tmp_path / "matrix.json").read_text())["combinations"]}
    expected = {s: checks for caught in CAUGHT.values() for s, checks in caught.items()}
    assert sorted(combos) == sorted([*expected, "failover"])
    failed = {name: {k["name"]: k["observed"] for k in c["checks"] if k["status"] != "PASS"}
              for name, c in combos.items()}
    assert failed["failover"] == {}, combos["failover"]
    for scenario, (must, may) in expected.items():
        assert failed[scenario], (scenario, combos[scenario]["checks"])
        assert must <= set(failed[scenario]) <= must | may, (scenario, failed[scenario])
    switches = failed["switchgroup"]
    assert all(v.endswith(":_not_so") for k, v in switches.items() if k.startswith("switch"))
    assert re.search(r"_outside_the_group_got_\d+", failed["failover-standby"]["group_io"])
    assert re.search(r"fail_count_0>[1-9]\d*_kernel_failed_path:_8:",
                     failed["target-error"]["no_path_failed"])
    assert qemu_processes_for(tmp_path) == []


def test_failover_is_stable_on_the_minimal_kernel(tree: KernelTree, tmp_path: Path) -> None:
    """A good kernel PASSes every time, not once: six runs on one image (the
    default matrix boots failover four more times; the README gives the longer counts), two
    at a time as a --repeat boots them, each beside another: a run under load must PASS too."""
    p = run_cli("run", "--output-dir", str(tmp_path), "--repeat", "6", env=tree.env,
                timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: 6/6 PASS" in p.stdout
    assert len(re.findall(r"^run \d+/6: PASS", p.stdout, re.M)) == 6
    assert qemu_processes_for(tmp_path) == []


def test_repeat_shows_the_distribution_of_a_flipping_verdict(tree: KernelTree,
                                                              tmp_path: Path) -> None:
    """A verdict that depends on a random draw: any FAIL makes the repeat FAIL."""
    cut = cut_dir_with_test_scenarios(tmp_path)
    p = run_cli("run", "--output-dir", str(tmp_path / "out"), "--cut-dir", str(cut),
                "--scenario", "coin", "--repeat", "8", env=tree.env)
    summary = p.stdout.splitlines()[-1]
    passes = len(re.findall(r"^run \d+/8: PASS", p.stdout, re.M))
    if passes == 8:
        assert p.returncode == 0 and summary == "coin: 8/8 PASS"
    elif passes == 0:
        assert p.returncode == 1 and summary == "coin: 8/8 FAIL: coin x8"
    else:
        assert p.returncode == 1, p.stdout + p.stderr
        assert re.fullmatch(rf"coin: ({passes} PASS, {8 - passes} FAIL|{8 - passes} FAIL, "
                            rf"{passes} PASS): coin x{8 - passes}", summary), summary


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
    assert f"confirmed: parent {history['fix_build'][:12]} 3/3 PASS, first bad {regression} " \
        "3/3 FAIL" in p.stdout
    steps = re.findall(r"^bisect step \d+: ([0-9a-f]{12}) (\w+)", p.stdout, re.M)
    assert (history["unbuildable"][:12], "skip") in steps
    assert (regression, "bad") in steps
    # left as found: on the original branch, no bisect in progress, no changes
    assert tree.git("rev-parse", "--abbrev-ref", "HEAD") == BASE
    assert not (tree.src / ".git" / "BISECT_LOG").exists()
    assert tree.git("status", "--porcelain", "--untracked-files=no") == ""
    assert qemu_processes_for(tmp_path) == []


@pytest.fixture
def harmless_history(tree: KernelTree) -> Iterator[str]:
    """Four commits on BASE that change nothing a test can see (no unbuildable one, so a
    bisect over them always names a commit)."""
    branch = "mpio-harmless-test"
    tree.git("checkout", "-qB", branch, BASE)
    for n in range(4):
        _edit(tree, "drivers/md/dm-rq.c", '#include "dm-core.h"\n',
              f'#include "dm-core.h"\n/* note {n} */\n')
        _commit(tree, f"dm rq: note {n}")
    head = tree.git("rev-parse", "HEAD")
    tree.git("checkout", "-q", BASE)
    yield head
    tree.git("checkout", "-qf", BASE)
    tree.git("branch", "-D", branch)


def test_bisect_led_astray_by_a_flip_says_not_confirmed(
        tree: KernelTree, harmless_history: str, tmp_path: Path) -> None:
    """Every commit flips a coin that FAILs 4 times in 5: git names some commit, and the
    confirmation runs (parent 4/4 PASS needed, 1 in 625) must refuse to bear it out."""
    cut = cut_dir_with_test_scenarios(tmp_path)
    (cut / "scenarios" / "coin.sh").unlink()
    (cut / "scenarios" / "coin.sh").write_text(
        (TEST_SCENARIOS / "coin.sh").read_text().replace("PASS_PERCENT: 50",
                                                         "PASS_PERCENT: 20"))
    p = run_cli("bisect", "--good", BASE, "--bad", harmless_history, "--output-dir",
                str(tmp_path / "out"), "--cut-dir", str(cut), "--scenario", "coin",
                "--confirm", "4", env=tree.env, timeout=3000)
    print(p.stdout)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "first bad commit: " in p.stdout
    assert re.search(r"^NOT confirmed: parent [0-9a-f]{12} .*, first bad [0-9a-f]{12} ",
                     p.stdout, re.M)
    assert tree.git("rev-parse", "--abbrev-ref", "HEAD") == BASE


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
