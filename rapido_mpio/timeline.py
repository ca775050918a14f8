"""What happened over time in one run, read back from its run directory.

All times are host seconds since QEMU started, the clock result.json uses. The guest's own
files (settle-*.txt, kmsg.txt) count guest uptime; result.json's timings.kernel_start turns
that into host time. A run directory with files missing (a hung run, one that never booted)
gives what there is: reading never raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from rapido_mpio import protocol

# "<4>[    6.492887] device-mapper: multipath: 254:0: Failing path 8:16."
DM_PATH_EVENT = re.compile(
    r"^(?:<\d+>)?\[\s*(?P<uptime>\d+\.\d+)\]\s*device-mapper: multipath: "
    r"(?:(?P<map>\S+): )?(?P<what>Failing|Reinstating) path (?P<path>\d+:\d+)", re.IGNORECASE)
# "  6.601 STEP fault 35", "  6.667 CHECK path_failed PASS fail_path_0"
EVENT_LINE = re.compile(r"^\s*(?P<at>\d+\.\d+) (?P<kind>[A-Z]+) ?(?P<text>.*)$")
SAMPLE_AT = re.compile(r"^at (?P<uptime>\d+(?:\.\d+)?)s$")


@dataclasses.dataclass(frozen=True)
class Fault:
    """A path fault: made by the host over QMP, or by the guest itself (in_guest)."""

    at: float
    action: str  # fail_path, restore_path, offline_path, ...
    args: tuple[str, ...]
    detail: str

    @property
    def in_guest(self) -> bool:
        return self.detail == "in the guest"

    @property
    def label(self) -> str:
        return " ".join((self.action, *self.args))


@dataclasses.dataclass(frozen=True)
class PathSample:
    """One path's state at one sample of a settled-state check (settle-<check>.txt)."""

    at: float
    check: str
    path: str  # maj:min
    kernel: str  # as the file writes it: A active, F failed, - not in the map
    multipathd: str  # A, F, or ? (multipathd did not know the path)


@dataclasses.dataclass(frozen=True)
class KernelPathEvent:
    """dm-multipath's own word on a path: Failing path / Reinstating path (kmsg.txt)."""

    at: float
    path: str
    event: str  # "failing" or "reinstating"
    map: str  # the map's maj:min, "" when the line does not say


@dataclasses.dataclass(frozen=True)
class IoSnapshot:
    """Per-path request counts at one io-<label>.txt snapshot."""

    label: str
    at: float | None  # None: not known
    estimated: bool  # a run from before result.json had blocks_at: the message before it
    paths: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]  # (path, ((counter, n), ...))

    def count(self, path: str, counter: str = "remapped") -> int | None:
        for p, counters in self.paths:
            if p == path:
                return dict(counters).get(counter)
        return None


@dataclasses.dataclass(frozen=True)
class Step:
    at: float
    name: str


@dataclasses.dataclass(frozen=True)
class CheckEvent:
    at: float
    name: str
    status: str  # PASS, FAIL, SKIP
    observed: str


@dataclasses.dataclass(frozen=True)
class Timeline:
    run_dir: Path
    kernel_start: float | None  # None: the guest never reached init
    scenario_start: float | None
    end: float | None  # the verdict, else QEMU's exit, else the last thing seen
    faults: tuple[Fault, ...] = ()
    samples: tuple[PathSample, ...] = ()
    kernel_events: tuple[KernelPathEvent, ...] = ()
    io: tuple[IoSnapshot, ...] = ()
    steps: tuple[Step, ...] = ()
    checks: tuple[CheckEvent, ...] = ()
    missing: tuple[str, ...] = ()  # what could not be read, for a human

    @property
    def paths(self) -> list[str]:
        """Every path seen anywhere, in the order first seen (samples, then kmsg, then I/O)."""
        seen: dict[str, None] = {}
        for s in self.samples:
            seen.setdefault(s.path)
        for e in self.kernel_events:
            seen.setdefault(e.path)
        for snap in self.io:
            for p, _ in snap.paths:
                seen.setdefault(p)
        return list(seen)

    @property
    def times(self) -> list[float]:
        """Every time in the timeline: what a drawing has to fit."""
        found = [f.at for f in self.faults] + [s.at for s in self.samples]
        found += [e.at for e in self.kernel_events] + [s.at for s in self.steps]
        found += [c.at for c in self.checks] + [i.at for i in self.io if i.at is not None]
        return found + [t for t in (self.scenario_start, self.end) if t is not None]


def read(run_dir: Path) -> Timeline:
    missing: list[str] = []
    result = _result_json(run_dir, missing)
    timings = result.get("timings") or {}
    kernel_start = _float(timings.get("kernel_start"))
    steps, checks = _events(result.get("events") or [])
    blocks_at = {str(k): float(v) for k, v in (result.get("blocks_at") or {}).items()}
    estimated = not blocks_at
    if estimated:
        blocks_at = _blocks_after(run_dir / "protocol.log", result.get("events") or [])
    samples: tuple[PathSample, ...] = ()
    kernel_events: tuple[KernelPathEvent, ...] = ()
    if kernel_start is None:
        missing.append("timings.kernel_start (guest times cannot be placed)")
    else:
        samples = _samples(run_dir, kernel_start)
        kernel_events = _kernel_events(run_dir / "kmsg.txt", kernel_start, missing)
    timeline = Timeline(
        run_dir=run_dir, kernel_start=kernel_start,
        scenario_start=_float(timings.get("scenario_start")),
        end=_float(timings.get("verdict")) or _float(timings.get("qemu_exit")),
        faults=_faults(result.get("actions") or []), samples=samples,
        kernel_events=kernel_events, io=_io(run_dir, blocks_at, estimated), steps=steps,
        checks=checks)
    if timeline.end is None:
        timeline = dataclasses.replace(timeline, end=max(timeline.times, default=None))
    return dataclasses.replace(timeline, missing=tuple(missing))


def _result_json(run_dir: Path, missing: list[str]) -> dict[str, Any]:
    try:
        d = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        missing.append("result.json")
        return {}
    return d if isinstance(d, dict) else {}


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def _faults(actions: list[Any]) -> tuple[Fault, ...]:
    found = []
    for a in actions:
        try:
            found.append(Fault(float(a["at"]), str(a["action"]),
                               tuple(str(x) for x in a.get("args", ())), str(a.get("detail", ""))))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return tuple(found)


def _events(lines: list[Any]) -> tuple[tuple[Step, ...], tuple[CheckEvent, ...]]:
    steps, checks = [], []
    for line in lines:
        m = EVENT_LINE.match(str(line))
        if m is None:
            continue
        at, text = float(m["at"]), m["text"]
        if m["kind"] == "STEP":
            # the guest's step line ends with its deadline in seconds
            name, _, _deadline = text.rpartition(" ")
            steps.append(Step(at, name or text))
        elif m["kind"] == "CHECK":
            words = text.split(" ", 2)
            if len(words) >= 2:
                checks.append(CheckEvent(at, words[0], words[1],
                                         words[2] if len(words) > 2 else ""))
    return tuple(steps), tuple(checks)


def _samples(run_dir: Path, kernel_start: float) -> tuple[PathSample, ...]:
    found: list[PathSample] = []
    for f in sorted(run_dir.glob("settle-*.txt")):
        check = f.stem.removeprefix("settle-")
        at: float | None = None
        for line in _lines(f):
            if m := SAMPLE_AT.match(line):
                at = round(kernel_start + float(m["uptime"]), 3)
                continue
            words = line.split()
            if at is not None and len(words) == 3:
                found.append(PathSample(at, check, *words))
    return tuple(sorted(found, key=lambda s: s.at))


def _kernel_events(kmsg: Path, kernel_start: float,
                   missing: list[str]) -> tuple[KernelPathEvent, ...]:
    if not kmsg.exists():
        missing.append(kmsg.name)
    found = []
    for line in _lines(kmsg):
        if m := DM_PATH_EVENT.match(line):
            found.append(KernelPathEvent(round(kernel_start + float(m["uptime"]), 3),
                                         m["path"], m["what"].lower(), m["map"] or ""))
    return tuple(found)


def _blocks_after(protocol_log: Path, events: list[Any]) -> dict[str, float]:
    """For a run from before blocks_at: each block's time is that of the timed message
    (STEP, CHECK, EVENT, ...) that came before it on the protocol channel."""
    timed = [(m["at"], f"{m['kind']} {m['text']}") for line in events
             if (m := EVENT_LINE.match(str(line)))]
    found: dict[str, float] = {}
    cursor, last_at = 0, None
    for line in _lines(protocol_log):
        kind, _, text = line.removeprefix("@@MPIO:").partition(" ")
        if not line.startswith("@@MPIO:") or kind in ("LINE", "STOP"):
            continue
        if kind == "BEGIN":
            if last_at is not None:
                found.setdefault(text, last_at)
            continue
        key = f"{kind} {text}"
        i = next((i for i in range(cursor, len(timed)) if timed[i][1] == key), None)
        if i is not None:
            cursor, last_at = i + 1, float(timed[i][0])
    return found


def _io(run_dir: Path, blocks_at: dict[str, float],
        estimated: bool) -> tuple[IoSnapshot, ...]:
    found = []
    for f in run_dir.glob("io-*.txt"):
        paths = []
        for line in _lines(f):  # as protocol.py decoded them (an older run's may not be)
            with contextlib.suppress(ValueError):
                dev, counts = protocol.io_line(line)
                paths.append((dev, tuple(counts.items())))
        found.append(IoSnapshot(f.stem.removeprefix("io-"), blocks_at.get(f.stem), estimated,
                                tuple(paths)))
    return tuple(sorted(found, key=lambda s: (s.at if s.at is not None else float("inf"),
                                              s.label)))


def _lines(f: Path) -> list[str]:
    try:
        return [ln.strip() for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return []
