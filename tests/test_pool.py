"""Two matrices and one output directory: the second is refused before it touches the
first's runs, and each combination's result is read from the run its own child made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rapido_mpio import config, pool, runner
from rapido_mpio.config import REPO_ROOT
from rapido_mpio.errors import SetupError
from rapido_mpio.results import Combination

from .conftest import run_cli

FAILOVER = Combination("failover", "default", "round-robin", None, None)


def run_with(run_dir: Path, result: str, code: int) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps(
        {"result": result, "exit_code": code, "reason": f"{result} here", "checks": [],
         "timings": {"verdict": 9.5}}))
    return run_dir


def test_the_pool_reads_the_run_its_child_made_not_last(tmp_path: Path) -> None:
    """`last` may name another run (another matrix's, a boot by hand): never read it."""
    work = tmp_path / "matrix-runs/01-failover"
    own = run_with(work / "runs/20261202-171800-failover", "PASS", 0)
    other = run_with(tmp_path / "elsewhere/runs/20261202-171801-failover", "FAIL", 1)
    (work / "last").symlink_to(other)
    got = pool.collect(pool.Job(FAILOVER, work, tmp_path), 0, 12.0, tmp_path)
    assert (got.result, got.reason) == ("PASS", "PASS here")
    assert got.run_dir == os.path.relpath(own, tmp_path)


def test_a_child_that_made_no_run_is_judged_by_its_exit(tmp_path: Path) -> None:
    work = tmp_path / "matrix-runs/01-failover"
    work.mkdir(parents=True)
    (work / "boot.log").write_text("rapido-mpio: Scenario failover uses a selector.\n")
    (work / "last").symlink_to(run_with(tmp_path / "elsewhere/run", "PASS", 0))
    got = pool.collect(pool.Job(FAILOVER, work, tmp_path), 125, 1.0, tmp_path)
    assert (got.result, got.reason) == ("UNTESTABLE", "Scenario failover uses a selector.")


def test_one_matrix_at_a_time_in_an_output_directory(tmp_path: Path) -> None:
    refused = f"Another matrix \\(pid {os.getpid()}\\)"
    with runner._sole_matrix(tmp_path), pytest.raises(SetupError, match=refused), \
            runner._sole_matrix(tmp_path):
        pass
    with runner._sole_matrix(tmp_path):  # free again once the first has ended
        pass


def test_a_second_matrix_into_one_output_directory_is_refused(tmp_path: Path) -> None:
    """While one matrix runs, a second into the same directory says so and stops, before it
    deletes the first's runs (which the first would then have read as its own)."""
    first = run_with(tmp_path / "matrix-runs/01-failover/runs/20261202-failover", "PASS", 0)
    with runner._sole_matrix(tmp_path):  # the first matrix, running
        p = run_cli("matrix", str(REPO_ROOT / "tests/matrices/small.yaml"),
                    "--output-dir", str(tmp_path), timeout=60)
    assert p.returncode == 255, p.stdout + p.stderr
    assert f"Another matrix (pid {os.getpid()}) is running in {tmp_path}" in p.stderr
    assert "Traceback" not in p.stderr
    assert (first / "result.json").exists()


@pytest.mark.parametrize(("accel", "host_cpus", "avail_mib", "vms"), [
    ("tcg", 2, 24000, 2),   # TCG: a guest's vCPUs share one host thread, whatever -smp says
    ("kvm", 2, 24000, 1),   # KVM: a thread per vCPU, 2 guest CPUs each
    ("kvm", 8, 24000, 4),
    ("tcg", 8, 2560, 2),    # memory for two guests of 1024 MiB plus QEMU's share
    ("tcg", 1, 24000, 1),
])
def test_vms_by_default_fit_the_host_threads_and_memory(
        tmp_path: Path, accel: str, host_cpus: int, avail_mib: int, vms: int) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 99999999 kB\nMemAvailable: {avail_mib * 1024} kB\n")
    cfg = config.load({}, environ={}, cwd=tmp_path)
    assert pool.default_vms(cfg, accel, host_cpus, meminfo) == vms
