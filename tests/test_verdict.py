"""From a run's record to a verdict: each branch of the judgement, decided on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapido_mpio.console import Message
from rapido_mpio.errors import ExitCode
from rapido_mpio.verdict import decide, kernel_messages, parse_check, parse_verdict_line
from rapido_mpio.vm import Hang, RunRecord

GOOD = [("CHECK", "map_paths PASS 2_active_0_failed"), ("CHECK", "data_intact PASS ab12"),
        ("VERDICT", "failover PASS 2")]


def _record(tmp_path: Path, kinds: list[tuple[str, str]], console: str = "",
            **over: object) -> RunRecord:
    (tmp_path / "console.log").write_text(console)
    r = RunRecord(tmp_path, tmp_path / "console.log", "TCG", qemu_status=0)
    r.messages = [Message(k, t, float(i)) for i, (k, t) in enumerate(kinds)]
    for key, value in over.items():
        setattr(r, key, value)
    return r


def _started(tmp_path: Path, kinds: list[tuple[str, str]], console: str = "",
             **over: object) -> RunRecord:
    return _record(tmp_path, [("START", "failover 1.0"), ("SCENARIO", "failover"), *kinds],
                   console, **over)


def test_parse_lines() -> None:
    assert parse_verdict_line("failover PASS 11") == ("failover", "PASS", 11)
    assert parse_check("data_intact SKIP mounted_failed").status == "SKIP"
    for bad in ("failover MAYBE 3", "failover PASS", "failover PASS x"):
        with pytest.raises(ValueError):
            parse_verdict_line(bad)
    with pytest.raises(ValueError):
        parse_check("data_intact MAYBE x")


def test_pass(tmp_path: Path) -> None:
    v = decide(_started(tmp_path, GOOD), "failover")
    assert v.exit_code == ExitCode.PASS and v.result == "PASS"
    assert [c.name for c in v.checks] == ["map_paths", "data_intact", "kernel_log"]


def test_failed_check_fails_and_is_named(tmp_path: Path) -> None:
    v = decide(_started(tmp_path, [("CHECK", "map_paths PASS 2"),
                                   ("CHECK", "data_intact FAIL unreadable"),
                                   ("VERDICT", "failover FAIL 2")]), "failover")
    assert v.exit_code == ExitCode.FAIL
    assert [c.name for c in v.failed] == ["data_intact"]


def test_skipped_check_is_never_a_pass(tmp_path: Path) -> None:
    v = decide(_started(tmp_path, [("CHECK", "mounted FAIL no"),
                                   ("CHECK", "data_intact SKIP mounted_failed"),
                                   ("VERDICT", "failover FAIL 2")]), "failover")
    assert v.exit_code == ExitCode.FAIL
    assert [c.name for c in v.skipped] == ["data_intact"]
    assert v.reason == "Failed: mounted. Skipped: data_intact."


def test_guest_and_host_disagreeing_is_a_bug_not_a_verdict(tmp_path: Path) -> None:
    says_pass = [("CHECK", "map_paths PASS 2"), ("CHECK", "data_intact FAIL x"),
                 ("VERDICT", "failover PASS 2")]
    v = decide(_started(tmp_path, says_pass), "failover")
    assert v.exit_code == ExitCode.SETUP and "bug in rapido-mpio" in v.reason
    lost_a_check = [("CHECK", "map_paths PASS 2"), ("VERDICT", "failover PASS 2")]
    v = decide(_started(tmp_path, lost_a_check), "failover")
    assert v.exit_code == ExitCode.SETUP and "2 checks" in v.reason


KMSG = [
    "<14>[    4.0] rapido-mpio: scenario failover starts",
    "<3>[    4.5] device-mapper: multipath: 254:0: Failing path 8:0.",
    "<12>[    4.6] WARNING: option foo is deprecated (userspace, through /dev/kmsg)",
    "<30>[    4.7] systemd-udevd[99]: WARNING: a daemon's log line",
]


def test_only_the_kernels_own_messages_count() -> None:
    assert kernel_messages(KMSG) == ["device-mapper: multipath: 254:0: Failing path 8:0."]


def test_userspace_warnings_do_not_fail_a_run(tmp_path: Path) -> None:
    console = "@@MPIO:SCENARIO failover\n@@MPIO:LINE multipathd-log WARNING: deprecated\n"
    v = decide(_started(tmp_path, GOOD, console, blocks={"kmsg": KMSG}), "failover")
    assert v.exit_code == ExitCode.PASS


def test_kernel_warning_fails_a_pass_unless_the_scenario_allows_it(tmp_path: Path) -> None:
    kmsg = [*KMSG, "<4>[    5.0] WARNING: CPU: 0 PID: 1 at drivers/md/dm-mpath.c:1 x",
            "<4>[    5.0] Call Trace:"]
    v = decide(_started(tmp_path, GOOD, blocks={"kmsg": kmsg}), "failover")
    assert v.exit_code == ExitCode.FAIL
    assert v.failed[0].name == "kernel_log" and "dm-mpath.c" in v.failed[0].observed
    allowed = decide(_started(tmp_path, GOOD, blocks={"kmsg": kmsg}), "failover",
                     allow=[r"dm-mpath\.c", "^Call Trace:"])
    assert allowed.exit_code == ExitCode.PASS


def test_without_the_guests_log_the_console_kernel_lines_count(tmp_path: Path) -> None:
    console = ("[ 1.0] WARNING: boot noise before the scenario\n@@MPIO:SCENARIO failover\n"
               "@@MPIO:LINE multipathd-log WARNING: not the kernel\n"
               "[ 5.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n")
    v = decide(_started(tmp_path, GOOD, console), "failover")
    assert v.exit_code == ExitCode.FAIL
    assert v.failed[0].name == "kernel_log" and "NULL_pointer" in v.failed[0].observed


def test_never_reached_scenario_is_untestable(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [], "Kernel panic - not syncing: VFS\n"), "failover")
    assert v.exit_code == ExitCode.UNTESTABLE and v.log_tail


def test_scenario_timeout_is_a_fail_naming_the_step(tmp_path: Path) -> None:
    v = decide(_started(tmp_path, [("STEP", "map 40"), ("CHECK", "map_paths PASS 2"),
                                   ("STEP", "filesystem 60")], "...\n",
                        timed_out="scenario"), "failover")
    assert v.exit_code == ExitCode.FAIL and "timed out in step filesystem" in v.reason
    assert [c.name for c in v.checks] == ["map_paths", "verdict", "kernel_log"]


def test_hung_step_is_a_fail_naming_the_step_and_its_seconds(tmp_path: Path) -> None:
    hang = Hang("io_after_fault", 40.0, 40.2, ("sysrq: Show Blocked State", "task:dd"))
    v = decide(_started(tmp_path, [("STEP", "io_after_fault 40")], hang=hang,
                        timed_out="step"), "failover")
    assert v.exit_code == ExitCode.FAIL
    assert "hung in step io_after_fault for 40.2s" in v.reason
    assert v.failed[0].observed == "io_after_fault_hung_40.2s_(deadline_40s)"


def test_qemu_that_cannot_start_is_a_setup_error(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [], "", qemu_status=1,
                       qemu_output="qemu-system-x86_64: -drive x: Could not open 'x'"),
               "failover")
    assert v.exit_code == ExitCode.SETUP and "Could not open" in v.reason


def test_monitor_failure_is_a_setup_error(tmp_path: Path) -> None:
    v = decide(_record(tmp_path, [("SCENARIO", "failover")],
                       host_error="drive_del path9: Device 'path9' not found"), "failover")
    assert v.exit_code == ExitCode.SETUP
