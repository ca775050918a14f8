"""From what happened in a run to a verdict and an exit code.

Order of judgement: a broken setup (255) beats everything; a guest that never reached the
scenario is untestable (125); after that, anything short of a clean PASS verdict with a
clean kernel log is FAIL (1): a hang, a panic, an oops or a failed check during the
scenario is exactly what a regression looks like.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from rapido_mpio.errors import ExitCode
from rapido_mpio.vm import RunRecord

# blktests' list, plus what a hang or a panic prints
SPLAT = re.compile(
    r"(kernel BUG at|BUG:|WARNING:|Oops|general protection fault|Kernel panic|"
    r"INFO: task .* blocked for more than|rcu: INFO: rcu_\w+ (self-)?detected stall|"
    r"UBSAN:|KASAN:|Call Trace:)"
)
TAIL_LINES = 25


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS or FAIL
    observed: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    scenario: str
    result: str  # PASS, FAIL, UNTESTABLE, ERROR
    exit_code: ExitCode
    checks: tuple[Check, ...]
    reason: str  # one sentence for a human
    log_tail: tuple[str, ...] = ()

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status != "PASS"]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "result": self.result, "exit_code": int(self.exit_code),
            "reason": self.reason,
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "log_tail": list(self.log_tail),
        }


def parse_verdict_line(text: str) -> tuple[str, str, list[Check]]:
    """'failover PASS name=PASS:observed ...' -> (scenario, result, checks)."""
    words = text.split()
    if len(words) < 2 or words[1] not in ("PASS", "FAIL"):
        raise ValueError(f"malformed verdict line: {text!r}")
    checks = []
    for word in words[2:]:
        name, eq, rest = word.partition("=")
        status, colon, observed = rest.partition(":")
        if not eq or not colon or status not in ("PASS", "FAIL"):
            raise ValueError(f"malformed check {word!r} in verdict line")
        checks.append(Check(name, status, observed))
    return words[0], words[1], checks


def kernel_splats(console_log: Path, scenario: str) -> list[str]:
    """Splat lines printed after the scenario started (boot noise is not the scenario's)."""
    try:
        lines = console_log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    start = next((i for i, ln in enumerate(lines) if f"@@MPIO:SCENARIO {scenario}" in ln), None)
    if start is None:
        return []
    return [ln.strip() for ln in lines[start:] if SPLAT.search(ln)]


def _tail(console_log: Path) -> tuple[str, ...]:
    try:
        lines = console_log.read_text(errors="replace").splitlines()
    except OSError:
        return ()
    return tuple(ln.rstrip() for ln in lines[-TAIL_LINES:])


def decide(record: RunRecord, scenario: str) -> Verdict:
    def verdict(result: str, code: ExitCode, reason: str, checks: list[Check] | None = None,
                tail: bool = False) -> Verdict:
        return Verdict(scenario, result, code, tuple(checks or ()), reason,
                       _tail(record.console_log) if tail else ())

    if record.host_error:
        return verdict("ERROR", ExitCode.SETUP, f"The host side broke: {record.host_error}.")
    started = record.first("SCENARIO") is not None
    if not started:
        if record.first("START") is None and record.qemu_status not in (None, 0) \
                and not _console_has_kernel(record.console_log):
            first_words = record.qemu_output.splitlines()[-1:] or ["no output"]
            return verdict("ERROR", ExitCode.SETUP,
                           f"QEMU failed to start (exit {record.qemu_status}): {first_words[0]}")
        why = ("timed out" if record.timed_out else "QEMU exited (panic or reboot)")
        return verdict("UNTESTABLE", ExitCode.UNTESTABLE,
                       f"The guest never reached the scenario: {why}.", tail=True)
    line = record.first("VERDICT")
    if line is None:
        why = ("the scenario timed out" if record.timed_out == "scenario"
               else "the guest died (panic, oops or reboot)")
        checks = _checks_so_far(record)
        return verdict("FAIL", ExitCode.FAIL, f"No verdict from the guest: {why}.",
                       checks + [Check("verdict", "FAIL", "none")], tail=True)
    try:
        _, result, checks = parse_verdict_line(line.text)
    except ValueError as e:
        return verdict("FAIL", ExitCode.FAIL, f"Unreadable verdict: {e}.", tail=True)
    splats = kernel_splats(record.console_log, scenario)
    checks.append(Check("kernel_log", "FAIL" if splats else "PASS",
                        _squeeze(splats[0]) if splats else "clean"))
    failed = [c.name for c in checks if c.status != "PASS"]
    if result == "PASS" and not failed:
        return verdict("PASS", ExitCode.PASS, "Every check passed.", checks)
    return verdict("FAIL", ExitCode.FAIL, "Failed: " + ", ".join(failed) + ".", checks,
                   tail=bool(splats))


def _checks_so_far(record: RunRecord) -> list[Check]:
    checks = []
    for m in record.messages:
        if m.kind == "CHECK":
            words = m.text.split(" ", 2)
            if len(words) == 3:
                checks.append(Check(words[0], words[1], words[2]))
    return checks


def _console_has_kernel(console_log: Path) -> bool:
    try:
        return console_log.stat().st_size > 0
    except OSError:
        return False


def _squeeze(text: str) -> str:
    return re.sub(r"[\s,=]+", "_", text.strip())[:120]
