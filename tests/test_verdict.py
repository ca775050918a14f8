"""From a run's record to a verdict: each branch of the judgement, and the verdict line."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapido_mpio.console import Message
from rapido_mpio.errors import ExitCode
from rapido_mpio.verdict import decide, parse_verdict_line
from rapido_mpio.vm import RunRecord

GOOD = "failover PASS map_paths=PASS:2_active data_intact=PASS:ab12"


def _record(tmp_path: Path, kinds: list[tuple[str, str]], console: str = "",
            **over: object) -> RunRecord:
    (tmp_path / "console.log").write_text(console)
    r = RunRecord(tmp_path, tmp_path / "console.log", "TCG", qemu_status=0)
    r.messages = [Message(k, t, float(i)) for i, (k, t) in enumerate(kinds)]
    for key, value in over.items():
        setattr(r, key, value)
    return r


def test_parse_verdict_line() -> None:
    scenario, result, checks = parse_verdict_line(GOOD + " ")
    assert (scenario, result) == ("failover", "PASS")
    assert [(c.name, c.status, c.observed) for c in checks] == [
        ("map_paths", "PASS", "2_active"), ("data_intact", "PASS", "ab12")]
    with pytest.raises(ValueError):
        parse_verdict_line("failover MAYBE")
    with pytest.raises(ValueError):
        parse_verdict_line("failover PASS broken")


def test_pass(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [("START", "failover 1.0"), ("SCENARIO", "failover"),
                                  ("VERDICT", GOOD)]), "failover")
    assert v.exit_code == ExitCode.PASS and v.result == "PASS"
    assert [c.name for c in v.checks] == ["map_paths", "data_intact", "kernel_log"]


def test_failed_check_fails_and_is_named(tmp_path: Path) -> None:
    line = "failover FAIL map_paths=PASS:2_active data_intact=FAIL:unreadable"
    v = decide(_record(tmp_path, [("SCENARIO", "failover"), ("VERDICT", line)]), "failover")
    assert v.exit_code == ExitCode.FAIL
    assert [c.name for c in v.failed] == ["data_intact"]


def test_splat_during_scenario_fails_a_pass(tmp_path: Path) -> None:
    console = ("[ 1.0] WARNING: boot noise before the scenario\n@@MPIO:SCENARIO failover\n"
               "[ 5.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n")
    v = decide(_record(tmp_path, [("SCENARIO", "failover"), ("VERDICT", GOOD)], console),
               "failover")
    assert v.exit_code == ExitCode.FAIL
    assert v.failed[0].name == "kernel_log" and "NULL_pointer" in v.failed[0].observed


def test_never_reached_scenario_is_untestable(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [], "Kernel panic - not syncing: VFS\n"), "failover")
    assert v.exit_code == ExitCode.UNTESTABLE and v.log_tail


def test_hang_during_scenario_is_a_fail(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [("SCENARIO", "failover"), ("CHECK", "map_paths PASS 2")],
                       "...\n", timed_out="scenario"), "failover")
    assert v.exit_code == ExitCode.FAIL and "timed out" in v.reason
    assert [c.name for c in v.checks] == ["map_paths", "verdict"]


def test_qemu_that_cannot_start_is_a_setup_error(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [], "", qemu_status=1,
                       qemu_output="qemu-system-x86_64: -drive x: Could not open 'x'"),
               "failover")
    assert v.exit_code == ExitCode.SETUP and "Could not open" in v.reason


def test_monitor_failure_is_a_setup_error(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [("SCENARIO", "failover")],
                       host_error="drive_del path9: Device 'path9' not found"), "failover")
    assert v.exit_code == ExitCode.SETUP
