"""Coverage's own parts that need no boot: what a run directory's counters can be, the
report's text, and the sentences for a tree that cannot be counted. The whole command
boots the default matrix on a gcov build in test_scenario_boots."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from rapido_mpio.coverage import Coverage, FileCoverage, FunctionCoverage, _unpack
from rapido_mpio.gcovbuild import GcovBuild, counted_sources, counting

from .conftest import run_cli
from .test_bad_input import assert_one_sentence, fake_tree, full_config

COUNTED = ("drivers/md/dm-mpath.c", "drivers/md/dm-ps-round-robin.c")


def gcov_build(tmp_path: Path) -> GcovBuild:
    build = tmp_path / "build"
    for c in COUNTED:
        gcno = build / Path(c).with_suffix(".gcno")
        gcno.parent.mkdir(parents=True, exist_ok=True)
        gcno.write_bytes(b"oncg")
    return GcovBuild(tmp_path / "src", build, COUNTED, 0.0)


def test_counters_become_gcda_beside_a_link_to_their_gcno(tmp_path: Path) -> None:
    built, run = gcov_build(tmp_path), tmp_path / "run"
    run.mkdir()
    (run / "gcov-dm-mpath.txt").write_text(base64.encodebytes(b"adcg" * 40).decode())
    (run / "gcov-dm-ps-round-robin.txt").write_text(base64.b64encode(b"adcg").decode())
    assert _unpack(run, built, tmp_path / "obj") == ""
    gcda = tmp_path / "obj/drivers/md/dm-mpath.gcda"
    assert gcda.read_bytes() == b"adcg" * 40  # base64 lines of 76 joined
    assert gcda.with_suffix(".gcno").resolve() == built.build / "drivers/md/dm-mpath.gcno"


def test_counters_that_cannot_be_read_say_why(tmp_path: Path) -> None:
    built = gcov_build(tmp_path)
    cases = {"none": {}, "unknown": {"gcov-dm-raid.txt": "YWRjZw=="},
             "garbled": {"gcov-dm-mpath.txt": "not base64 at all!"}}
    why = {}
    for name, blocks in cases.items():
        run = tmp_path / name
        run.mkdir()
        for block, text in blocks.items():
            (run / block).write_text(text)
        why[name] = _unpack(run, built, tmp_path / f"obj-{name}")
    assert "sent no counters" in why["none"]
    assert "gcov-dm-raid.txt names no file" in why["unknown"]
    assert "not base64" in why["garbled"]
    assert not (tmp_path / "obj-unknown").exists()  # nothing outside what is counted


def test_counted_sources_follow_the_tree(tmp_path: Path) -> None:
    for name in ("dm-mpath.c", "dm-path-selector.c", "dm-ps-round-robin.c",
                 "dm-ps-new-one.c", "dm-raid.c", "dm-ps-notes.txt"):
        (tmp_path / "drivers/md").mkdir(parents=True, exist_ok=True)
        (tmp_path / "drivers/md" / name).write_text("")
    assert counted_sources(tmp_path) == (
        "drivers/md/dm-mpath.c", "drivers/md/dm-path-selector.c",
        "drivers/md/dm-ps-new-one.c", "drivers/md/dm-ps-round-robin.c")


def test_report_names_what_was_not_reached_and_who_reached_first() -> None:
    c = Coverage(
        kernel="/cache/build", matrix="cut/matrix.yaml",
        files=(FileCoverage("drivers/md/dm-mpath.c", 10, 7, 3, 2),),
        functions=(FunctionCoverage("drivers/md/dm-mpath.c", "multipath_ctr", 1200, 3,
                                    "failover/-/-/-/config"),
                   FunctionCoverage("drivers/md/dm-mpath.c", "multipath_map_bio", 600, 0, "")),
        counted=("failover/-/-/-/config",),
        uncounted=(("all-paths-down/-/-/-/config", "the guest sent no counters"),))
    text = c.text()
    assert "dm-mpath.c" in text and "2/3  66.7%" in text and "7/10  70.0%" in text
    assert "Functions not reached:\n  drivers/md/dm-mpath.c:600 multipath_map_bio\n" in text
    assert "drivers/md/dm-mpath.c:1200 multipath_ctr: failover/-/-/-/config" in text
    assert "all-paths-down/-/-/-/config: the guest sent no counters" in text
    assert c.to_json()["format"] == 1


def test_coverage_needs_a_kernel_tree(tmp_path: Path) -> None:
    p = run_cli("matrix", "--coverage", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_sentence(p, 255, "Coverage needs a kernel tree", "--kernel-src")


def test_coverage_of_a_tree_without_dm_mpath_or_unbuilt(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "linux", full_config())
    p = run_cli("matrix", "--coverage", "--kernel-src", str(tree), cwd=tmp_path)
    assert_one_sentence(p, 255, "no drivers/md/dm-mpath.c")
    (tree / "drivers/md").mkdir(parents=True)
    (tree / "drivers/md/dm-mpath.c").write_text("")
    (tree / "arch/x86/boot/bzImage").unlink()
    p = run_cli("matrix", "--coverage", "--kernel-src", str(tree), cwd=tmp_path)
    assert_one_sentence(p, 255, "not built")


def test_a_build_that_already_counts_is_used_as_it_is(tmp_path: Path) -> None:
    """gcov and debugfs on, and every counted object compiled with its .gcno; an object
    rebuilt since without GCOV_PROFILE (newer than its .gcno) means it no longer counts."""
    (tmp_path / ".config").write_text("CONFIG_GCOV_KERNEL=y\nCONFIG_DEBUG_FS=y\n")
    for c in COUNTED:
        for suffix in (".o", ".gcno"):
            f = tmp_path / Path(c).with_suffix(suffix)
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
    assert counting(tmp_path, COUNTED)
    obj = tmp_path / "drivers/md/dm-mpath.o"
    os.utime(obj, (obj.stat().st_atime, obj.stat().st_mtime + 60))
    assert not counting(tmp_path, COUNTED)
    os.utime(obj, (obj.stat().st_atime, obj.stat().st_mtime - 60))
    (tmp_path / "drivers/md/dm-ps-round-robin.gcno").unlink()
    assert not counting(tmp_path, COUNTED)
    (tmp_path / ".config").write_text("CONFIG_DEBUG_FS=y\n")
    assert not counting(tmp_path, ("drivers/md/dm-mpath.c",))
