"""Real boots: Debian's default kernel, real multipath-tools, xfsprogs and udev, under QEMU.

Every verdict has its negative control: the same code path must come out FAIL when a path
really is lost for good, and the harness must end QEMU whatever happens.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapido_mpio.config import REPO_ROOT

from .conftest import last_result, qemu_processes_for, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cut of the failover image on the default kernel, shared by the boots below."""
    out = tmp_path_factory.mktemp("mpio-out")
    p = run_cli("cut", "--output-dir", str(out))
    assert p.returncode == 0, p.stderr
    return out


def test_failover_passes_on_default_kernel(out: Path) -> None:
    p = run_cli("boot", "--output-dir", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: PASS" in p.stdout
    result = last_result(out)
    checks = {c["name"]: c for c in result["checks"]}
    assert all(c["status"] == "PASS" for c in checks.values())
    assert {"map_paths", "io_after_pull", "kernel_paths", "multipathd_paths", "data_intact",
            "kernel_log"} <= set(checks)
    assert checks["kernel_paths"]["observed"] == "1_active_1_failed"
    assert result["host_actions"] and "drive_del path0" in result["host_actions"][0]
    run = out / "last"
    assert "active ready" in (run / "multipath-before.txt").read_text()
    assert "failed faulty" in (run / "multipath-after.txt").read_text()
    assert "Failing path" in (run / "console.log").read_text()
    assert (run / "qemu-cmd.sh").read_text().startswith("#!/bin/sh")
    assert qemu_processes_for(out) == []


def test_all_paths_lost_is_a_fail(out: Path) -> None:
    """Negative control: both paths pulled; the same checks must see it and say FAIL."""
    p = run_cli("run", "--output-dir", str(out), "--scenario", "all-paths-lost")
    assert p.returncode == 1, p.stdout + p.stderr
    failed = {c["name"] for c in last_result(out)["checks"] if c["status"] == "FAIL"}
    assert {"io_after_pull", "kernel_paths", "data_intact"} <= failed
    assert "FAILED io_after_pull" in p.stdout
    assert qemu_processes_for(out) == []


def test_guest_that_never_reports_is_untestable(out: Path) -> None:
    run_cli("cut", "--output-dir", str(out))
    began = time.monotonic()
    p = run_cli("boot", "--output-dir", str(out), "--boot-timeout", "1")
    assert p.returncode == 125, p.stdout + p.stderr
    assert "never reached the scenario: timed out" in p.stdout
    assert time.monotonic() - began < 30
    assert qemu_processes_for(out) == []


def test_scenario_that_hangs_is_a_fail(out: Path) -> None:
    p = run_cli("boot", "--output-dir", str(out), "--scenario-timeout", "1")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "scenario timed out" in p.stdout
    assert last_result(out)["timed_out"] == "scenario"
    assert qemu_processes_for(out) == []


def test_ctrl_c_ends_qemu(out: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rapido_mpio", "boot", "--output-dir",
                             str(out)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not qemu_processes_for(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert qemu_processes_for(out), "QEMU never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 255
    assert "interrupted" in err and "Traceback" not in err
    assert qemu_processes_for(out) == []
