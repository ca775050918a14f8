"""What a running matrix shows: a live view on a terminal (running combinations with their
step, failures, time left), one line per combination without one."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from rich.console import Console

from rapido_mpio import pool, progress
from rapido_mpio.results import CheckResult, Combination, CombinationResult

FAILOVER = Combination("failover", "default", "queue-length", "multibus", "offline")


def done(seconds: float, status: str = "PASS") -> CombinationResult:
    checks = (CheckResult("path_io", "FAIL", "down_8:16_+40"),) if status == "FAIL" else ()
    return CombinationResult(FAILOVER, status, 0 if status == "PASS" else 1, "why", checks,
                             seconds=seconds)


def test_without_a_terminal_one_line_per_combination() -> None:
    out = io.StringIO()
    with progress.Progress(2, 2, out) as view:
        view.finished(done(9.0))
        view.finished(done(8.0, "FAIL"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "rapido-mpio: matrix: 2 combinations, 2 VMs at a time"
    assert lines[1] == ("[1/2] PASS             failover/queue-length/multibus/offline/default "
                        "(9.0s)")
    assert lines[2].endswith("(8.0s) - path_io: down_8:16_+40")


def test_live_view_shows_steps_failures_and_time_left(tmp_path: Path) -> None:
    log = tmp_path / "runs/20261126-failover/protocol.log"
    log.parent.mkdir(parents=True)
    log.write_text("@@MPIO:START failover 1.5\n@@MPIO:STEP modules 60\n"
                   "@@MPIO:SCENARIO failover\n@@MPIO:STEP fault 35\n")
    with subprocess.Popen(["true"]) as proc:
        running = pool.Running(pool.Job(FAILOVER, tmp_path, tmp_path), proc, 0.0)
    view = progress.Progress(5, 2, io.StringIO())
    view.done = [done(10.0), done(12.0, "FAIL")]
    view.tick([running])
    out = io.StringIO()
    Console(file=out, width=160).print(view._view())
    text = out.getvalue()
    assert "running: fault" in text
    assert "2/5 done, 1 as expected, 0 skipped, 1 not" in text
    assert "FAIL" in text  # the failed one stays in view
    # three left at a median of 11 s over 2 VMs, less what the running one has spent
    assert 0 <= view.remaining_seconds() <= 3 * 11.0 / 2

