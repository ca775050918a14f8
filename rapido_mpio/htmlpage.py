"""The matrix as one self-contained HTML page: summary, a table of combinations (worst
first), and for each run a failover timeline drawn as inline SVG.

The drawing is plain geometry computed here (rects, lines, labels with coordinates); the
template only writes them out. No scripts, no network: the page works from a file:// URL
or a CI artifact browser.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import jinja2

from rapido_mpio import timeline as tl
from rapido_mpio.results import CheckResult, CombinationResult, MatrixResult

TEMPLATE = "matrix.html.j2"

# path states as settle-*.txt writes them, for kernel and multipathd alike
STATE_COLOURS = {"A": "#2e9e44", "F": "#d6343a", "-": "#555555", "?": "#e0a020"}
STATE_NAMES = {"A": "active", "F": "failed", "-": "not in the map", "?": "unknown to multipathd"}
OTHER_STATE = "#8e44ad"
UNSAMPLED = "#e4e4e4"
HOST_FAULT = "#c0392b"
GUEST_FAULT = "#8e44ad"
IO_MARK = "#1f6fb2"
STEP_MARK = "#9a9a9a"
CHECK_COLOURS = {"PASS": "#2e9e44", "FAIL": "#d6343a", "SKIP": "#9a9a9a"}

WIDTH = 1000
LEFT = 130  # path names and band names
RIGHT = 70  # room for the labels of what happens last
BAND = 9  # one state band's height
STEP_ROWS, FAULT_ROWS, IO_ROWS = 3, 2, 2  # label rows, staggered so close labels do not overlap
ROW = 12

# verdict groups, in the table's order: what needs a look first
GROUPS = ("FAIL", "ERROR", "UNTESTABLE", "CONTROL", "PASS", "SKIPPED")
GROUP_TITLES = {
    "FAIL": "FAIL", "ERROR": "ERROR (broken setup)", "UNTESTABLE": "UNTESTABLE",
    "CONTROL": "negative control, failed as declared", "PASS": "PASS",
    "SKIPPED": "SKIPPED (not for this kernel)"}


@dataclasses.dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    title: str = ""


@dataclasses.dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str
    width: float = 1.0
    dash: str = ""  # SVG stroke-dasharray, "" for solid
    title: str = ""


@dataclasses.dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    fill: str = "#222222"
    anchor: str = "start"  # SVG text-anchor
    size: int = 11
    bold: bool = False
    title: str = ""


@dataclasses.dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    rects: tuple[Rect, ...]
    lines: tuple[Line, ...]
    labels: tuple[Label, ...]
    title: str  # for the SVG's <title>, and screen readers


@dataclasses.dataclass(frozen=True)
class Row:
    """One combination in the table."""

    result: CombinationResult
    group: str  # one of GROUPS
    verdict: str  # what the table says
    failed: tuple[CheckResult, ...]
    run_href: str  # relative to the page; "" without a run directory
    anchor: str  # the id of its timeline on the page; "" without one


@dataclasses.dataclass(frozen=True)
class RunView:
    row: Row
    drawing: Drawing | None  # None: nothing with a time in it
    missing: tuple[str, ...]
    io: tuple[tl.IoSnapshot, ...]
    paths: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SummaryItem:
    label: str
    value: str
    css: str


@dataclasses.dataclass(frozen=True)
class Page:
    title: str
    result: MatrixResult
    summary: tuple[SummaryItem, ...]
    rows: tuple[Row, ...]
    runs: tuple[RunView, ...]
    legend: Drawing


def page(result: MatrixResult, out_dir: Path) -> Page:
    """out_dir: where the page goes, and what run_dirs are relative to."""
    rows = sorted((_row(r, i) for i, r in enumerate(result.results)),
                  key=lambda row: GROUPS.index(row.group))
    runs = []
    for row in rows:
        if not row.result.run_dir:
            continue
        t = tl.read(out_dir / row.result.run_dir)
        runs.append(RunView(row, draw(t, title=row.result.combination.id), t.missing, t.io,
                            tuple(t.paths)))
    return Page(title=f"rapido-mpio matrix: {result.matrix}", result=result,
                summary=_summary(result), rows=tuple(rows), runs=tuple(runs), legend=legend())


def render(result: MatrixResult, out_dir: Path, templates_dir: Path) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(page=page(result, out_dir),
                                             colours=STATE_COLOURS)


def write(result: MatrixResult, out_dir: Path, templates_dir: Path,
          name: str = "index.html") -> Path:
    path = out_dir / name
    path.write_text(render(result, out_dir, templates_dir))
    return path


def _row(r: CombinationResult, index: int) -> Row:
    if r.result == "ERROR":
        group, verdict = "ERROR", "ERROR"
    elif r.result in ("UNTESTABLE", "SKIPPED"):
        group, verdict = r.result, r.result
    elif r.expect_fail:
        group, verdict = (("CONTROL", "failed as declared") if r.counts_as_pass else
                          ("FAIL", f"{r.result}, control not as declared"))
    else:
        group, verdict = ("PASS", "PASS") if r.result == "PASS" else ("FAIL", r.result)
    return Row(r, group, verdict, tuple(r.failed),
               run_href=quote(r.run_dir.rstrip("/") + "/") if r.run_dir else "",
               anchor=f"run-{index}" if r.run_dir else "")


def _summary(result: MatrixResult) -> tuple[SummaryItem, ...]:
    s = result.summary()
    failed = s.failed + s.controls_not_as_declared
    fail_note = (f" (of which {s.controls_not_as_declared} negative control(s) not as "
                 "declared)" if s.controls_not_as_declared else "")
    return (
        SummaryItem("pass", str(s.passed), "pass"),
        SummaryItem("negative controls failed as declared", str(s.controls_as_declared),
                    "control"),
        SummaryItem(f"fail{fail_note}", str(failed), "fail" if failed else "zero"),
        SummaryItem("untestable", str(s.untestable), "untestable" if s.untestable else "zero"),
        SummaryItem("error", str(s.errors), "error" if s.errors else "zero"),
        SummaryItem("skipped (not for this kernel)", str(s.skipped), "zero"),
        SummaryItem("wall seconds", f"{result.seconds:.1f}", "plain"),
        SummaryItem("exit code", str(int(result.exit_code)), "plain"),
    )


def draw(t: tl.Timeline, title: str = "") -> Drawing | None:
    """The run as lanes, one per path: the kernel's state over multipathd's, with faults,
    steps, checks, dm's own path events and the I/O snapshots on one time axis."""
    times = t.times
    if not times:
        return None
    t0 = t.scenario_start if t.scenario_start is not None else min(times)
    t1 = max(t.end or 0.0, max(times))
    t1 = max(t1, t0 + 1.0)
    plot_w = WIDTH - LEFT - RIGHT

    def x(at: float) -> float:
        return round(LEFT + (min(max(at, t0), t1) - t0) / (t1 - t0) * plot_w, 1)

    rects: list[Rect] = []
    lines: list[Line] = []
    labels: list[Label] = []
    paths = t.paths
    lane_h = 40 if len(paths) <= 8 else 26
    steps_y = 4
    faults_y = steps_y + STEP_ROWS * ROW + 4
    lanes_y = faults_y + FAULT_ROWS * ROW + 6
    lanes_end = lanes_y + max(len(paths), 1) * lane_h
    checks_y = lanes_end + 4
    io_y = checks_y + 14
    axis_y = io_y + IO_ROWS * ROW + 6
    height = axis_y + 22

    labels.append(Label(LEFT - 6, steps_y + ROW - 2, "steps", "#666666", "end", 10))
    for i, st in enumerate(s for s in t.steps if s.at >= t0):
        lines.append(Line(x(st.at), steps_y + 2, x(st.at), lanes_end, STEP_MARK, 1, "2,3",
                          f"step {st.name} at {st.at:.3f}s"))
        labels.append(Label(x(st.at) + 2, steps_y + ROW * (i % STEP_ROWS + 1) - 2, st.name,
                            "#555555", size=10, title=f"step {st.name} at {st.at:.3f}s"))
    labels.append(Label(LEFT - 6, faults_y + ROW - 2, "faults", "#666666", "end", 10))
    for i, f in enumerate(t.faults):
        colour = GUEST_FAULT if f.in_guest else HOST_FAULT
        text = f.label + (" (guest)" if f.in_guest else "")
        tip = f"{text} at {f.at:.3f}s: {f.detail}"
        lines.append(Line(x(f.at), faults_y + 2, x(f.at), lanes_end, colour, 1.5, "5,3", tip))
        labels.append(Label(x(f.at) + 3, faults_y + ROW * (i % FAULT_ROWS + 1) - 2, text,
                            colour, size=11, bold=True, title=tip))

    for n, path in enumerate(paths):
        y = lanes_y + n * lane_h
        labels.append(Label(6, y + BAND + 6, path, bold=True, size=12))
        if lane_h >= 40:
            labels.append(Label(LEFT - 6, y + BAND, "kernel", "#666666", "end", 9))
            labels.append(Label(LEFT - 6, y + 2 * BAND + 3, "multipathd", "#666666", "end", 9))
        for band, attr in ((0, "kernel"), (1, "multipathd")):
            by = y + 2 + band * (BAND + 2)
            rects.append(Rect(LEFT, by, plot_w, BAND, UNSAMPLED))
            for start, end, state, check in _segments(t.samples, path, attr, t1):
                rects.append(Rect(x(start), by, max(x(end) - x(start), 1.5), BAND,
                                  STATE_COLOURS.get(state, OTHER_STATE),
                                  f"{path} {attr}: {STATE_NAMES.get(state, state)} "
                                  f"({check}, {start:.2f}-{end:.2f}s)"))
        for e in t.kernel_events:
            if e.path == path:
                lines.append(Line(x(e.at), y, x(e.at), y + BAND + 4, "#000000", 2.5, "",
                                  f"dm-multipath {e.map}: {e.event} path {path} "
                                  f"at {e.at:.3f}s"))
        if lane_h >= 40:
            previous: int | None = None
            for snap in t.io:
                n_now = snap.count(path)
                if snap.at is None or n_now is None:
                    continue
                delta = f"+{n_now - previous}" if previous is not None else str(n_now)
                counters = ", ".join(f"{k}={v}" for p, cs in snap.paths if p == path
                                     for k, v in cs)
                labels.append(Label(x(snap.at) + 2, y + 2 * BAND + 15, delta, IO_MARK, size=10,
                                    title=f"io-{snap.label} {path}: {counters}"))
                previous = n_now

    labels.append(Label(LEFT - 6, checks_y + 8, "checks", "#666666", "end", 10))
    for c in t.checks:
        if c.at >= t0:
            rects.append(Rect(x(c.at) - 3, checks_y + 1, 6, 8,
                              CHECK_COLOURS.get(c.status, OTHER_STATE),
                              f"CHECK {c.name} {c.status} {c.observed} at {c.at:.3f}s"))
    labels.append(Label(LEFT - 6, io_y + ROW - 2, "I/O (dm remapped)", "#666666", "end", 10))
    for i, snap in enumerate(s for s in t.io if s.at is not None):
        at = float(snap.at or 0.0)
        when = f"~{at:.3f}s (estimated)" if snap.estimated else f"{at:.3f}s"
        lines.append(Line(x(at), lanes_y, x(at), io_y + ROW * (i % IO_ROWS) + 2, IO_MARK, 1,
                          "1,2", f"io-{snap.label} at {when}"))
        labels.append(Label(x(at) + 2, io_y + ROW * (i % IO_ROWS + 1) - 2, f"io-{snap.label}",
                            IO_MARK, size=10, title=f"io-{snap.label} at {when}"))

    lines.append(Line(LEFT, axis_y, LEFT + plot_w, axis_y, "#444444"))
    every = _tick_step(t1 - t0)
    tick = (int(t0 / every) + 1) * every
    labels.append(Label(LEFT - 6, axis_y + 14, "host s", "#666666", "end", 10))
    while tick <= t1:
        lines.append(Line(x(tick), axis_y, x(tick), axis_y + 4, "#444444"))
        labels.append(Label(x(tick), axis_y + 15, f"{tick:g}", "#444444", "middle", 10))
        tick = round(tick + every, 6)
    return Drawing(WIDTH, height, tuple(rects), tuple(lines), tuple(labels),
                   title or str(t.run_dir.name))


def legend() -> Drawing:
    rects: list[Rect] = []
    lines: list[Line] = []
    labels: list[Label] = []
    x = 4.0
    items = [(STATE_COLOURS[s], STATE_NAMES[s]) for s in STATE_COLOURS]
    items.append((UNSAMPLED, "not sampled"))
    for colour, name in items:
        rects.append(Rect(x, 4, 18, BAND, colour))
        labels.append(Label(x + 22, 4 + BAND, name, size=11))
        x += 30 + 6.5 * len(name)
    x = 4.0
    for colour, width, dash, name in (
            (HOST_FAULT, 1.5, "5,3", "fault from the host (QMP)"),
            (GUEST_FAULT, 1.5, "5,3", "fault in the guest"),
            ("#000000", 2.5, "", "dm-multipath: Failing/Reinstating path"),
            (STEP_MARK, 1, "2,3", "step starts"),
            (IO_MARK, 1, "1,2", "I/O snapshot (+N: requests dm sent to the path since the "
             "last one)")):
        lines.append(Line(x + 9, 22, x + 9, 36, colour, width, dash))
        labels.append(Label(x + 16, 33, name, size=11))
        x += 30 + 6.2 * len(name)
    return Drawing(int(max(x, 900)), 42, tuple(rects), tuple(lines), tuple(labels), "legend")


def _segments(samples: Iterable[tl.PathSample], path: str, attr: str,
              t_end: float) -> list[tuple[float, float, str, str]]:
    """(start, end, state, check): a state holds from one sample to the next of the same
    check; the last sample of a check holds for that check's usual sampling interval."""
    by_check: dict[str, list[tl.PathSample]] = {}
    for s in samples:
        if s.path == path:
            by_check.setdefault(s.check, []).append(s)
    found: list[tuple[float, float, str, str]] = []
    for check, ss in by_check.items():
        ss.sort(key=lambda s: s.at)
        gaps = [b.at - a.at for a, b in zip(ss, ss[1:], strict=False)]
        interval = statistics.median(gaps) if gaps else 0.25
        for i, s in enumerate(ss):
            end = ss[i + 1].at if i + 1 < len(ss) else min(s.at + interval, t_end)
            state = str(getattr(s, attr))
            if found and found[-1][2] == state and found[-1][3] == check:
                found[-1] = (found[-1][0], end, state, check)  # one rect for a steady state
            else:
                found.append((s.at, end, state, check))
    return found


def _tick_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300):
        if span / step <= 20:
            return float(step)
    return 600.0
