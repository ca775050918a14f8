"""Issue 15, case 13: a guest that freezes before the scenario is booted once more, and
result.json says so; a second freeze stays untestable, and a freeze during the scenario
stays a hang (FAIL). Through the real CLI, runner, vm and verdict, with a stand-in QEMU
whose guest freezes (tests/frozen_qemu.py); the last test boots the real QEMU after it."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from rapido_mpio.config import REPO_ROOT

from .conftest import last_result, qemu_processes_for, run_cli


def _qemu(tmp_path: Path) -> str:
    """The stand-in as a --qemu binary: the test's own Python runs it."""
    wrapper = tmp_path / "qemu-that-freezes"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO_ROOT))} exec "
                       f"{shlex.quote(sys.executable)} -m tests.frozen_qemu \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def stand_in_image(tmp_path: Path) -> Path:
    """An output directory with an image the stand-in boots (it reads none of it)."""
    out = tmp_path / "out"
    (out / "image").mkdir(parents=True)
    layer = tmp_path / "layer.cpio"
    layer.write_bytes(b"")
    (out / "image" / "image.json").write_text(json.dumps({
        "manifest": "mpio", "kernel_image": str(tmp_path / "vmlinux"),
        "kernel_release": "6.1.0-stand-in", "kernel_label": "a stand-in kernel",
        "layers": [str(layer)], "selectors": None}))
    return out


def _runs(out: Path) -> list[dict[str, Any]]:
    return [json.loads((d / "result.json").read_text())
            for d in sorted((out / "runs").iterdir())]


def test_a_second_freeze_before_the_scenario_stays_untestable(stand_in_image: Path,
                                                              tmp_path: Path) -> None:
    p = run_cli("boot", "--output-dir", str(stand_in_image), "--qemu", _qemu(tmp_path),
                "--accel", "tcg", env={"FROZEN_AT": "modules"}, timeout=60)
    assert p.returncode == 125, p.stdout + p.stderr
    first, second = _runs(stand_in_image)
    assert first["exit_code"] == 125 and first["retried"] is None
    assert "never reached the scenario: timed out in init's step modules" in first["reason"]
    assert second["exit_code"] == 125
    assert second["retried"]["first_run"] == str(sorted((stand_in_image / "runs").iterdir())[0])
    assert "froze in init's step modules, before the scenario began" \
        in second["retried"]["reason"]
    assert last_result(stand_in_image) == second
    assert "Booting once more" in p.stderr and "retried: The guest froze" in p.stdout
    assert "Traceback" not in p.stderr
    assert qemu_processes_for(stand_in_image) == []


def test_each_repeated_run_is_retried_once_and_says_so(stand_in_image: Path,
                                                       tmp_path: Path) -> None:
    p = run_cli("boot", "--output-dir", str(stand_in_image), "--qemu", _qemu(tmp_path),
                "--accel", "tcg", "--repeat", "2", env={"FROZEN_AT": "modules"}, timeout=60)
    assert p.returncode == 125, p.stdout + p.stderr
    # each repeated run (two at a time, so in any order) booted twice: a retried run for
    # each first run, naming it
    runs = {str(d): json.loads((d / "result.json").read_text())
            for d in (stand_in_image / "runs").iterdir()}
    firsts = {r["retried"]["first_run"] for r in runs.values() if r["retried"]}
    assert len(runs) == 4 and len(firsts) == 2 and firsts <= set(runs)
    assert all(runs[f]["retried"] is None for f in firsts)
    assert p.stdout.count("booted twice: the first froze") == 2
    assert "failover: 2/2 UNTESTABLE" in p.stdout


def test_a_freeze_during_the_scenario_is_a_hang_never_retried(stand_in_image: Path,
                                                              tmp_path: Path) -> None:
    p = run_cli("boot", "--output-dir", str(stand_in_image), "--qemu", _qemu(tmp_path),
                "--accel", "tcg", env={"FROZEN_AT": "scenario"}, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    (only,) = _runs(stand_in_image)
    assert only["retried"] is None
    assert "hung in step fault" in only["reason"]
    assert "Booting once more" not in p.stderr


def test_a_kernel_that_answers_sysrq_is_not_a_freeze(stand_in_image: Path,
                                                     tmp_path: Path) -> None:
    """It is alive and hangs in itself (the task dump shows where): untestable at once."""
    p = run_cli("boot", "--output-dir", str(stand_in_image), "--qemu", _qemu(tmp_path),
                "--accel", "tcg", env={"FROZEN_AT": "modules", "FROZEN_ANSWERS_SYSRQ": "1"},
                timeout=60)
    assert p.returncode == 125, p.stdout + p.stderr
    (only,) = _runs(stand_in_image)
    assert only["retried"] is None
    assert "Show Blocked State" in (stand_in_image / "last" / "task-dump.txt").read_text()


@pytest.mark.integration
def test_a_freeze_then_a_real_boot_passes_and_says_it_was_retried(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("cut", "--output-dir", str(out)).returncode == 0
    p = run_cli("boot", "--output-dir", str(out), "--qemu", _qemu(tmp_path),
                env={"FROZEN_AT": "modules", "FROZEN_BOOTS": "1",
                     "FROZEN_COUNT": str(tmp_path / "boots")})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: PASS" in p.stdout
    first, second = _runs(out)
    assert first["exit_code"] == 125 and second["exit_code"] == 0
    assert second["retried"]["first_run"].endswith(
        sorted(d.name for d in (out / "runs").iterdir())[0])
    assert (tmp_path / "boots").read_text() == "2"
    assert qemu_processes_for(out) == []
