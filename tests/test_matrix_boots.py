"""`rapido-mpio matrix` for real: several VMs at a time on Debian's default kernel, its
reports, a slice of it (--shard) merged with the rest, and Ctrl-C ending every QEMU."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import kcidb_io
import pytest

from rapido_mpio.config import REPO_ROOT

from .conftest import interrupt_with_qemus_running, qemu_processes_for, run_cli

pytestmark = pytest.mark.integration

SMALL = REPO_ROOT / "tests/matrices/small.yaml"


@pytest.fixture(scope="module")
def small(
        tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("matrix")
    p = run_cli("matrix", str(SMALL), "--output-dir", str(out), "--vms", "2", "--kcidb",
                str(out / "kcidb.json"), timeout=600)
    return out, p


def by_scenario(out: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((out / "matrix.json").read_text())
    return {f"{c['scenario']}/{c['selector']}": c for c in data["combinations"]}


def test_matrix_runs_every_combination_and_exits_by_the_rules(
        small: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, p = small
    assert p.returncode == 0, p.stdout + p.stderr
    # no terminal: one line per finished combination
    assert len([ln for ln in p.stdout.splitlines() if ln.startswith("[")]) == 3
    assert "1 PASS, 0 FAIL, 1 negative controls failed as declared" in p.stdout
    found = by_scenario(out)
    ok = found["failover/round-robin"]
    assert ok["result"] == "PASS" and ok["seconds"] > 1
    run = out / ok["run_dir"]
    result = json.loads((run / "result.json").read_text())
    assert result["result"] == "PASS"
    # the combination's selector reached multipathd
    assert "policy='round-robin 0'" in (run / "multipath-before.txt").read_text()
    control = found["all-paths-lost/None"]
    assert control["negative_control"]["as_declared"] is True
    skipped = found["failover/historical-service-time"]
    assert skipped["result"] == "SKIPPED"
    assert "CONFIG_DM_MULTIPATH_HST" in skipped["reason"]
    data = json.loads((out / "matrix.json").read_text())
    assert data["exit_code"] == 0 and data["summary"]["skipped"] == 1
    assert qemu_processes_for(out) == []


def test_matrix_writes_its_reports(small: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = small
    suites = ET.parse(out / "junit.xml").getroot()
    assert (suites.get("tests"), suites.get("failures"), suites.get("skipped")) == \
        ("3", "0", "1")
    kcidb_io.schema.LATEST.validate(json.loads((out / "kcidb.json").read_text()))
    page = (out / "index.html").read_text()
    assert page.count("<svg") >= 2  # a timeline per run that booted (and the legend)
    assert "CONFIG_DM_MULTIPATH_HST" in page


def test_shards_merge_into_the_whole(small: tuple[Path, subprocess.CompletedProcess[str]],
                                     tmp_path: Path) -> None:
    whole, _ = small
    parts = []
    for i in (1, 2):
        part = tmp_path / f"shard{i}"
        p = run_cli("matrix", str(SMALL), "--shard", f"{i}/2", "--output-dir", str(part),
                    timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
        parts.append(part / "matrix.json")
    merged = tmp_path / "merged"
    p = run_cli("merge", *map(str, parts), "--output-dir", str(merged))
    assert p.returncode == 0, p.stdout + p.stderr
    got = by_scenario(merged)
    assert set(got) == set(by_scenario(whole))
    assert {k: v["result"] for k, v in got.items()} == \
        {k: v["result"] for k, v in by_scenario(whole).items()}
    # each run directory is still reachable from the merged report
    ran = [c for c in got.values() if c["run_dir"]]
    assert len(ran) == 2 and all((merged / c["run_dir"] / "result.json").is_file() for c in ran)


@pytest.mark.parametrize("to_group", [False, True], ids=["matrix-alone", "terminal"])
def test_ctrl_c_ends_every_qemu(tmp_path: Path, to_group: bool) -> None:
    """SIGINT to the matrix alone (as a CI runner's cancel sends it): it stops each child,
    and each child its QEMU. From a terminal, to the whole process group: each child gets
    SIGINT and then its parent's SIGTERM, and the second must not cut its cleanup short."""
    interrupt_with_qemus_running(["matrix", str(SMALL), "--output-dir", str(tmp_path),
                                  "--vms", "2"], tmp_path, 2, to_group)
