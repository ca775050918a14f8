"""From what happened in a run to a verdict and an exit code: decided here, and only here.

The guest reports what it observed (CHECK messages) and marks its end with a VERDICT line;
the host judges those checks, the kernel log and the timing. Order of judgement: a broken
setup (255) beats everything; a guest that never reached the scenario is untestable (125);
a guest whose own verdict line disagrees with its checks is a bug in rapido-mpio (255);
after that, anything short of every check passing with a clean kernel log is FAIL (1): a
hang, a panic, an oops or a failed check during the scenario is what a regression looks like.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rapido_mpio import protocol
from rapido_mpio.errors import ExitCode
from rapido_mpio.vm import RunRecord

# blktests' list, plus what a hang or a panic prints
SPLAT = re.compile(
    r"(kernel BUG at|BUG:|WARNING:|Oops|general protection fault|Kernel panic|"
    r"INFO: task .* blocked for more than|rcu: INFO: rcu_\w+ (self-)?detected stall|"
    r"UBSAN:|KASAN:|Call Trace:)"
)
# a raw kernel log record as `dmesg -r` prints it: <facility*8+level>[seconds] text
KMSG = re.compile(r"^<(\d+)>\[\s*[\d.]+\] ?(.*)$")
# a console line in the kernel's own format (the fallback when the guest sent no log)
CONSOLE_KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] (.*)$")
TAIL_LINES = 25


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL, or SKIP (a prerequisite failed, so it proves nothing)
    observed: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    scenario: str
    result: str  # PASS, FAIL, UNTESTABLE, ERROR
    exit_code: ExitCode
    checks: tuple[Check, ...]
    reason: str  # one sentence for a human
    log_tail: tuple[str, ...] = ()
    expect_fail: tuple[str, ...] = ()  # a negative control's declared failures

    @property
    def as_declared(self) -> bool | None:
        """For a negative control: did it fail on exactly the checks it declares? (None for
        a scenario that is not one.) The exit code stays the run's own: this is how a
        report counts it, not what it is."""
        if not self.expect_fail:
            return None
        return self.result == "FAIL" and {c.name for c in self.failed} == set(self.expect_fail)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    @property
    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.status == "SKIP"]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "result": self.result, "exit_code": int(self.exit_code),
            "reason": self.reason,
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "log_tail": list(self.log_tail),
            "negative_control": None if not self.expect_fail else {
                "expect_fail": list(self.expect_fail), "as_declared": self.as_declared},
        }


def parse_check(text: str) -> Check:
    """'name STATUS observed' (a CHECK message) -> Check."""
    m = _decoded("CHECK", text, "check")
    return Check(m.name, m.args[0], m.args[1])


def parse_verdict_line(text: str) -> tuple[str, str, int]:
    """'failover PASS 11' (the guest's end marker) -> (scenario, its result, its check count)."""
    m = _decoded("VERDICT", text, "verdict line")
    return m.name, m.args[0], m.count or 0


def _decoded(kind: str, text: str, what: str) -> protocol.Message:
    """The grammar is protocol.py's, the one decoder of the guest's lines."""
    try:
        return protocol.decode(f"{protocol.MARKER}{kind} {text}", 0.0)
    except protocol.ProtocolError:
        raise ValueError(f"malformed {what} {text!r}") from None


def kernel_messages(kmsg: Iterable[str]) -> list[str]:
    """The kernel's own messages among raw records: facility 0. Userspace writes to /dev/kmsg
    (multipathd, udevd, our own mark) carry another facility, which the kernel enforces."""
    found: list[str] = []
    kernel = False
    for line in kmsg:
        m = KMSG.match(line)
        if m is None:  # a continuation of the record before
            if kernel:
                found.append(line.strip())
            continue
        kernel = int(m.group(1)) < 8
        if kernel:
            found.append(m.group(2))
    return found


def kernel_splats(record: RunRecord, allow: Iterable[str] = ()) -> list[str]:
    """Splats the kernel printed during the scenario, minus what the scenario allows.

    From the kernel log the guest sent (messages after its mark in /dev/kmsg); a guest
    that died before sending it leaves the console, in the kernel's line format, after the
    scenario marker."""
    allowed = [re.compile(a) for a in allow]
    if "kmsg" in record.blocks:
        lines = kernel_messages(record.blocks["kmsg"])
    else:
        lines = _console_kernel_lines(record.console_log)
    return [ln.strip() for ln in lines
            if SPLAT.search(ln) and not any(a.search(ln) for a in allowed)]


def _console_kernel_lines(console_log: Path) -> list[str]:
    try:
        lines = console_log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    start = next((i for i, ln in enumerate(lines) if ln.startswith("@@MPIO:SCENARIO ")), None)
    if start is None:
        return []
    return [m.group(1) for ln in lines[start:] if (m := CONSOLE_KERNEL_LINE.match(ln))]


def _tail(console_log: Path) -> tuple[str, ...]:
    try:
        lines = console_log.read_text(errors="replace").splitlines()
    except OSError:
        return ()
    return tuple(ln.rstrip() for ln in lines[-TAIL_LINES:])


def decide(record: RunRecord, scenario: str, allow: Iterable[str] = (),
           expect_fail: Iterable[str] = ()) -> Verdict:
    v = dataclasses.replace(_decide(record, scenario, allow), expect_fail=tuple(expect_fail))
    if v.as_declared is None:
        return v
    failed = ", ".join(c.name for c in v.failed) or "nothing"
    note = ("A negative control, and it failed exactly as declared." if v.as_declared else
            f"A negative control that did NOT fail as declared: expected "
            f"{', '.join(v.expect_fail)}; failed {failed}.")
    return dataclasses.replace(v, reason=f"{v.reason} {note}")


def _decide(record: RunRecord, scenario: str, allow: Iterable[str]) -> Verdict:
    def verdict(result: str, code: ExitCode, reason: str, checks: list[Check] | None = None,
                tail: bool = False) -> Verdict:
        return Verdict(scenario, result, code, tuple(checks or ()), reason,
                       _tail(record.console_log) if tail else ())

    if record.host_fs:
        return verdict("ERROR", ExitCode.SETUP, record.host_fs)
    if record.host_error:
        return verdict("ERROR", ExitCode.SETUP, f"The host side broke: {record.host_error}.")
    if record.protocol_error:
        return verdict("ERROR", ExitCode.SETUP,
                       f"A protocol error: the guest sent {record.protocol_error}; a bug in "
                       f"the guest side of rapido-mpio, or a hostile guest.")
    started = record.first("SCENARIO") is not None
    if not started:
        if record.first("START") is None and record.qemu_status not in (None, 0) \
                and not _console_has_kernel(record.console_log):
            first_words = record.qemu_output.splitlines()[-1:] or ["no output"]
            return verdict("ERROR", ExitCode.SETUP,
                           f"QEMU failed to start (exit {record.qemu_status}): {first_words[0]}")
        why = ("timed out" if record.timed_out else "QEMU exited (panic or reboot)")
        step = record.last_step()
        if step is not None:
            why += f" in init's step {step.text.split()[0]}"
        if record.hang is not None:
            why += "; task dump in task-dump.txt"
        return verdict("UNTESTABLE", ExitCode.UNTESTABLE,
                       f"The guest never reached the scenario: {why}.", tail=True)
    try:
        checks = [parse_check(m.text) for m in record.messages if m.kind == "CHECK"]
    except ValueError as e:
        return verdict("ERROR", ExitCode.SETUP, f"The guest sent {e}: a bug in rapido-mpio.")
    splats = kernel_splats(record, allow)
    kernel_log = Check("kernel_log", "FAIL" if splats else "PASS",
                       _squeeze(splats[0]) if splats else "clean")
    step = record.last_step()
    hang = record.hang
    if hang is not None and record.timed_out == "step":
        checks.append(Check("step_deadline", "FAIL",
                            f"{hang.step}_hung_{hang.seconds:.1f}s_(deadline_{hang.deadline:g}s)"))
        return verdict("FAIL", ExitCode.FAIL,
                       f"The scenario hung in step {hang.step} for {hang.seconds:.1f}s "
                       f"(its deadline is {hang.deadline:g}s); task dump in task-dump.txt.",
                       checks + [kernel_log], tail=True)
    line = record.first("VERDICT")
    if line is None:
        why = ("the scenario timed out" if record.timed_out == "scenario"
               else "the guest died (panic, oops or reboot)")
        where = f" in step {step.text.split()[0]}" if step is not None else ""
        dump = "; task dump in task-dump.txt" if hang is not None else ""
        return verdict("FAIL", ExitCode.FAIL, f"No verdict from the guest: {why}{where}{dump}.",
                       checks + [Check("verdict", "FAIL", "none"), kernel_log], tail=True)
    try:
        _, guest_result, guest_count = parse_verdict_line(line.text)
    except ValueError as e:
        return verdict("ERROR", ExitCode.SETUP, f"The guest sent {e}: a bug in rapido-mpio.")
    own = "PASS" if checks and all(c.status == "PASS" for c in checks) else "FAIL"
    if (guest_result, guest_count) != (own, len(checks)):
        return verdict("ERROR", ExitCode.SETUP,
                       f"The guest's verdict ({guest_result}, {guest_count} checks) disagrees "
                       f"with the checks it sent ({own}, {len(checks)}): a bug in rapido-mpio.",
                       checks)
    checks.append(kernel_log)
    failed = [c.name for c in checks if c.status == "FAIL"]
    skipped = [c.name for c in checks if c.status == "SKIP"]
    if not failed and not skipped:
        return verdict("PASS", ExitCode.PASS, "Every check passed.", checks)
    reason = "Failed: " + ", ".join(failed) + "." if failed else ""
    if skipped:
        reason += (" " if reason else "") + "Skipped: " + ", ".join(skipped) + "."
    return verdict("FAIL", ExitCode.FAIL, reason, checks, tail=bool(splats))


def _console_has_kernel(console_log: Path) -> bool:
    try:
        return console_log.stat().st_size > 0
    except OSError:
        return False


def _squeeze(text: str) -> str:
    return re.sub(r"[\s,=]+", "_", text.strip())[:120]
