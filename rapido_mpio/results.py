"""What a matrix run found: one record per combination, and the whole (matrix.json).

This is the boundary between running the matrix and reporting on it: the JUnit, HTML and
KCIDB writers read only these, and `merge` joins shards' matrix.json through them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rapido_mpio.errors import ExitCode, SetupError
from rapido_mpio.inputs import MAX_JSON_BYTES, Record, parse_json, printable, read_text

FORMAT = 1


@dataclasses.dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # PASS, FAIL or SKIP
    observed: str


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    id: str  # the matrix's name for it: "default", or the tree's directory name
    label: str  # what the image says (Debian's default kernel, or the tree)
    release: str  # uname -r
    source: str  # the tree's path, or the Debian package


@dataclasses.dataclass(frozen=True)
class Combination:
    """One cell of the matrix: what runs, before it runs."""

    scenario: str
    kernel: str  # a KernelInfo.id
    selector: str | None = None  # path_selector, e.g. "service-time"; None: the scenario's
    grouping: str | None = None  # path_grouping_policy; None: the scenario's
    fault: str | None = None  # the scenario's FAULT env; None: the scenario's own
    env: tuple[tuple[str, str], ...] = ()  # more scenario env (paths, seeds, ...)

    @property
    def id(self) -> str:
        """Stable and readable: the same combination has the same id in every shard."""
        parts = [self.scenario, self.selector or "-", self.grouping or "-",
                 self.fault or "-", self.kernel]
        parts += [f"{k}={v}" for k, v in self.env]
        return "/".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "scenario": self.scenario, "kernel": self.kernel,
                "selector": self.selector, "grouping": self.grouping, "fault": self.fault,
                "env": dict(self.env)}


@dataclasses.dataclass(frozen=True)
class CombinationResult:
    combination: Combination
    result: str  # PASS, FAIL, UNTESTABLE, ERROR; SKIPPED: does not apply to this kernel
    exit_code: int
    reason: str  # one sentence
    checks: tuple[CheckResult, ...] = ()
    seconds: float = 0.0  # QEMU start to verdict, or the whole attempt when it never booted
    run_dir: str = ""  # relative to the matrix's output directory; "" when it never booted
    log_tail: tuple[str, ...] = ()
    expect_fail: tuple[str, ...] = ()  # a negative control's declared failures
    as_declared: bool | None = None  # a negative control: failed exactly as it declares

    @property
    def counts_as_pass(self) -> bool:
        """A scenario that PASSes, or a negative control that FAILs as it declares."""
        if self.expect_fail:
            return bool(self.as_declared)
        return self.result == "PASS"

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "FAIL"]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.combination.to_json(), "result": self.result, "exit_code": self.exit_code,
            "reason": self.reason, "checks": [dataclasses.asdict(c) for c in self.checks],
            "seconds": self.seconds, "run_dir": self.run_dir, "log_tail": list(self.log_tail),
            "negative_control": None if not self.expect_fail else {
                "expect_fail": list(self.expect_fail), "as_declared": self.as_declared},
        }

    @classmethod
    def from_run(cls, combination: Combination, run: dict[str, Any], run_dir: str,
                 wall: float = 0.0) -> CombinationResult:
        """What the matrix records for one run, from the run's result.json (`run`); its
        seconds are QEMU start to verdict (to QEMU's exit, or `wall`, when there was none)."""
        timings = run.get("timings") or {}
        seconds = timings.get("verdict") or timings.get("qemu_exit") or wall
        control = run.get("negative_control") or {}
        return cls(
            combination, run["result"], int(run["exit_code"]), run["reason"],
            checks=tuple(CheckResult(c["name"], c["status"], c["observed"])
                         for c in run.get("checks", [])),
            seconds=round(float(seconds), 3), run_dir=run_dir,
            log_tail=tuple(run.get("log_tail", [])),
            expect_fail=tuple(control.get("expect_fail", [])),
            as_declared=control.get("as_declared"))

    @classmethod
    def from_json(cls, d: Record) -> CombinationResult:
        """What to_json wrote; a field of another type is a ValueError."""
        control = d.record("negative_control")
        expect_fail = control.strings("expect_fail")  # none: not a negative control
        env = d.record("env")
        exit_code = d.get("exit_code", int)
        if not 0 <= exit_code <= 255:
            raise ValueError(f"{d.where}.exit_code is not an exit code")
        return cls(
            combination=Combination(
                scenario=d.get("scenario", str), kernel=d.get("kernel", str),
                selector=d.optional("selector", str), grouping=d.optional("grouping", str),
                fault=d.optional("fault", str),
                env=tuple((k, env.get(k, str)) for k in env.data)),
            result=d.get("result", str), exit_code=exit_code, reason=d.get("reason", str),
            checks=tuple(CheckResult(c.get("name", str), c.get("status", str),
                                     c.get("observed", str)) for c in d.records("checks")),
            seconds=d.number("seconds", 0.0), run_dir=d.optional("run_dir", str) or "",
            log_tail=d.strings("log_tail"), expect_fail=expect_fail,
            as_declared=control.optional("as_declared", bool) if expect_fail else None,
        )


@dataclasses.dataclass(frozen=True)
class Summary:
    passed: int  # scenarios that PASSed
    failed: int  # scenarios that FAILed
    controls_as_declared: int  # negative controls that failed exactly as declared
    controls_not_as_declared: int
    untestable: int
    errors: int
    skipped: int  # not for this kernel (a path selector it lacks): said why, not run

    @property
    def total(self) -> int:
        return (self.passed + self.failed + self.controls_as_declared +
                self.controls_not_as_declared + self.untestable + self.errors + self.skipped)


@dataclasses.dataclass(frozen=True)
class MatrixResult:
    matrix: str  # the matrix file it ran
    shards: tuple[str, ...]  # "1/1", or the shards merged ("1/3", "2/3", "3/3")
    seconds: float  # wall time (the longest shard's, after a merge)
    jobs: int  # VMs at a time
    kernels: tuple[KernelInfo, ...]
    results: tuple[CombinationResult, ...]

    def summary(self) -> Summary:
        rs = self.results
        controls = [r for r in rs if r.expect_fail and r.result in ("PASS", "FAIL")]
        plain = [r for r in rs if not r.expect_fail]
        return Summary(
            passed=sum(r.result == "PASS" for r in plain),
            failed=sum(r.result == "FAIL" for r in plain),
            controls_as_declared=sum(bool(r.as_declared) for r in controls),
            controls_not_as_declared=sum(not r.as_declared for r in controls),
            untestable=sum(r.result == "UNTESTABLE" for r in rs),
            errors=sum(r.result == "ERROR" for r in rs),
            skipped=sum(r.result == "SKIPPED" for r in rs),
        )

    @property
    def exit_code(self) -> ExitCode:
        """As for one run: a broken setup aborts (255), any FAIL is a FAIL (a negative control
        that did not fail as declared is one: the checks are blind), then untestable (125)."""
        s = self.summary()
        if s.errors:
            return ExitCode.SETUP
        if s.failed or s.controls_not_as_declared:
            return ExitCode.FAIL
        if s.untestable:
            return ExitCode.UNTESTABLE
        return ExitCode.PASS

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "matrix": self.matrix, "shards": list(self.shards),
            "seconds": self.seconds, "jobs": self.jobs,
            "kernels": [dataclasses.asdict(k) for k in self.kernels],
            "summary": dataclasses.asdict(self.summary()),
            "exit_code": int(self.exit_code),
            "combinations": [r.to_json() for r in self.results],
        }

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> MatrixResult:
        hint = "Give the matrix.json that `rapido-mpio matrix` wrote."
        text = read_text(path, "matrix.json", hint, limit=MAX_JSON_BYTES)
        try:
            d = Record(parse_json(text), "the file")
            if d.data.get("format") != FORMAT:
                raise ValueError(f"no format {FORMAT} inside")
            return cls(
                matrix=d.get("matrix", str), shards=d.strings("shards"),
                seconds=d.number("seconds"), jobs=d.get("jobs", int),
                kernels=tuple(KernelInfo(k.get("id", str), k.get("label", str),
                                         k.get("release", str), k.get("source", str))
                              for k in d.records("kernels")),
                results=tuple(CombinationResult.from_json(c) for c in d.records("combinations")))
        except ValueError as e:
            raise SetupError(f"{printable(str(path))} is not a rapido-mpio matrix.json ({e}).",
                             hint=hint) from None


def merge(parts: Iterable[MatrixResult]) -> MatrixResult:
    """Shards of one matrix joined into one result, in combination order of the shards."""
    parts = list(parts)
    if not parts:
        raise SetupError("Nothing to merge.", hint="Give the shards' matrix.json files.")
    matrices = {p.matrix for p in parts}
    if len(matrices) > 1:
        raise SetupError(f"These shards ran different matrix files: {', '.join(sorted(matrices))}.",
                         hint="Merge shards of one matrix only.")
    kernels: dict[str, KernelInfo] = {}
    results: dict[str, CombinationResult] = {}
    for p in parts:
        kernels.update({k.id: k for k in p.kernels})
        for r in p.results:
            if r.combination.id in results:
                raise SetupError(f"Combination {r.combination.id} is in two shards.",
                                 hint="Merge each shard once, all with the same count N.")
            results[r.combination.id] = r
    return MatrixResult(
        matrix=parts[0].matrix, shards=tuple(s for p in parts for s in p.shards),
        seconds=max(p.seconds for p in parts), jobs=max(p.jobs for p in parts),
        kernels=tuple(kernels.values()), results=tuple(results.values()))
