"""What a run leaves behind (result.json, multipath -ll before/after, logs) and prints."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TextIO

from rapido_mpio import files, protocol
from rapido_mpio.image import Image
from rapido_mpio.verdict import Verdict
from rapido_mpio.vm import RunRecord


def timings(record: RunRecord) -> dict[str, float | None]:
    """Seconds since QEMU started. kernel_start is derived from the guest's uptime at init."""
    start = record.first("START")
    kernel_start = None
    if start is not None and start.seconds is not None:
        kernel_start = round(start.at - start.seconds, 3)

    def at(kind: str) -> float | None:
        m = record.first(kind)
        return round(m.at, 3) if m else None

    return {
        "kernel_start": kernel_start,
        "init_start": at("START"),
        "scenario_start": at("SCENARIO"),
        "verdict": at("VERDICT"),
        "qemu_exit": round(record.exited_at, 3) if record.exited_at is not None else None,
    }


def path_io(record: RunRecord) -> dict[str, dict[str, dict[str, int]]]:
    """Per-path request counts at each snapshot the guest took (blocks io-LABEL):
    {label: {"8:0": {"remapped": N, "iorequest": N, "ioerr": N}}}."""
    snapshots: dict[str, dict[str, dict[str, int]]] = {}
    for name, lines in record.blocks.items():
        if not name.startswith("io-"):
            continue
        paths = snapshots.setdefault(name.removeprefix("io-"), {})
        for line in lines:  # each one decoded as it came (protocol.py)
            with contextlib.suppress(ValueError):
                dev, counts = protocol.io_line(line)
                paths[dev] = counts
    return snapshots


def save(record: RunRecord, verdict: Verdict, image: Image, output_dir: Path,
         retried: dict[str, str] | None = None) -> Path:
    """`retried`: this run is the second boot after a freeze ({"reason", "first_run"})."""
    for name, lines in record.blocks.items():
        (record.run_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")
    if record.hang is not None:
        (record.run_dir / "task-dump.txt").write_text(
            "\n".join(record.hang.dump) + "\n" if record.hang.dump else
            "(no task dump: the kernel printed nothing after sysrq w; it may lack "
            "CONFIG_MAGIC_SYSRQ or a PS/2 keyboard driver)\n")
    result: dict[str, Any] = verdict.to_json()
    result.update({
        "kernel": {"label": image.kernel_label, "release": image.kernel_release,
                   "image": str(image.kernel_image)},
        "accel": record.accel,
        "timings": timings(record),
        "actions": [a.to_json() for a in record.actions],
        "path_io": path_io(record),
        # when each block began (host seconds): the io-* snapshots carry no time of their own
        "blocks_at": {m.text: round(m.at, 3) for m in record.messages if m.kind == "BEGIN"},
        "hang": dataclasses.asdict(record.hang) if record.hang else None,
        "events": [f"{m.at:7.3f} {m.kind} {m.text}" for m in record.messages
                   if m.kind not in ("LINE", "BEGIN", "STOP")],
        "qemu_exit_status": record.qemu_status,
        "timed_out": record.timed_out,
        "retried": retried,
    })
    path = record.run_dir / "result.json"
    try:
        path.write_text(json.dumps(result, indent=2) + "\n")
    except OSError:  # a full disk: no result.json rather than half of one
        path.unlink(missing_ok=True)
        raise
    last = output_dir / "last"
    with contextlib.suppress(OSError):
        files.link_atomic(last, os.path.relpath(record.run_dir, output_dir))
    return path


def print_summary(verdict: Verdict, record: RunRecord, out: TextIO) -> None:
    done = record.first("VERDICT")
    when = f" in {done.at:.1f}s" if done is not None else ""
    print(f"rapido-mpio: {verdict.scenario}: {verdict.result}{when} "
          f"(exit {int(verdict.exit_code)}) - {verdict.reason}", file=out)
    passed = [c.name for c in verdict.checks if c.status == "PASS"]
    if passed:
        print(f"  passed: {', '.join(passed)}", file=out)
    for check in verdict.checks:
        if check.status == "FAIL":
            print(f"  FAILED {check.name}: {check.observed}", file=out)
        elif check.status == "SKIP":
            print(f"  skipped {check.name}: {check.observed}", file=out)
    if verdict.log_tail:
        print("  last lines of the console:", file=out)
        for line in verdict.log_tail[-10:]:
            print(f"    {line}", file=out)
    print(f"  artifacts: {record.run_dir} (console.log, result.json, qemu-cmd.sh)", file=out)
