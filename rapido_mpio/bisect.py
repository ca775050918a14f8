"""git bisect in a kernel tree, one build + cut + boot per step, without babysitting.

Each step's verdict maps to git bisect's words: PASS good, FAIL bad, a build failure or an
untestable kernel skip, a broken setup aborts. The tree goes back to where it was with
`git bisect reset` however the bisect ends, Ctrl-C included.
"""

from __future__ import annotations

import dataclasses
import io
import re
import sys
import time
from pathlib import Path
from typing import TextIO

from rapido_mpio import command, kbuild, runner
from rapido_mpio.config import Config
from rapido_mpio.errors import ExitCode, MpioError, SetupError

FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit", re.M)


@dataclasses.dataclass(frozen=True)
class Step:
    number: int
    commit: str
    subject: str
    mark: str  # good, bad, skip
    why: str
    build_seconds: float
    cut_seconds: float
    boot_seconds: float
    artifacts: Path


@dataclasses.dataclass(frozen=True)
class Confirmation:
    """The first bad commit and its parent, rebuilt and run again: does the answer hold?"""

    parent: str
    parent_runs: str  # distribution, e.g. "failover: 3/3 PASS"
    first_bad_runs: str
    confirmed: bool


@dataclasses.dataclass(frozen=True)
class Result:
    first_bad: str | None  # None: skipped commits left it open
    subject: str
    steps: tuple[Step, ...]
    git_says: str
    confirmation: Confirmation | None = None


class Git:
    def __init__(self, tree: Path) -> None:
        command.require("git", "git")
        self.tree = tree

    def __call__(self, *args: str) -> str:
        return command.run(["git", "-C", str(self.tree), *args]).strip()


def bisect(cfg: Config, good: str, bad: str, extra: tuple[str, ...] = (),
           out: TextIO = sys.stdout, repeat: int = 1, confirm: int = 3) -> Result:
    tree = kbuild.tree_of(cfg)
    git = Git(tree.src)
    _refuse_unusable(git, tree.src, good, bad)
    logs = cfg.output_dir / "bisect"
    logs.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []
    said = git("bisect", "start", bad, good)
    try:
        while True:
            step = _step(cfg, git, len(steps) + 1, logs, extra, repeat)
            steps.append(step)
            print(f"bisect step {step.number}: {step.commit[:12]} {step.mark:4} "
                  f"({step.why}) build {step.build_seconds:.1f}s cut {step.cut_seconds:.2f}s "
                  f"boot {step.boot_seconds:.1f}s  {step.subject[:60]}", file=out, flush=True)
            said = git("bisect", step.mark)
            found = FIRST_BAD.search(said)
            if found:
                first_bad = found.group(1)
                subject = git("log", "-1", "--format=%s", first_bad)
                confirmation = None
                if confirm:
                    print(f"confirming: {confirm} runs each of {first_bad[:12]} and its "
                          "parent", file=out, flush=True)
                    confirmation = _confirm(cfg, git, first_bad, logs, extra, confirm)
                return Result(first_bad, subject, tuple(steps), said, confirmation)
            if "only 'skip'ped commits left" in said:
                return Result(None, "", tuple(steps), said)
    finally:
        git("bisect", "reset")  # back to what was checked out before the start


def _refuse_unusable(git: Git, src: Path, good: str, bad: str) -> None:
    try:
        git("rev-parse", "--git-dir")
    except MpioError:
        raise SetupError(f"{src} is not a git repository.",
                         hint="Bisect needs the kernel's git history.") from None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    if dirty:
        raise SetupError(f"{src} has uncommitted changes ({dirty.splitlines()[0].strip()}"
                         f"{' ...' if len(dirty.splitlines()) > 1 else ''}).",
                         hint="Commit or stash them: bisect checks out other commits.")
    bisect_log = Path(git("rev-parse", "--git-path", "BISECT_LOG"))
    if (src / bisect_log).exists():  # an absolute path stays itself under src /
        raise SetupError(f"A git bisect is already in progress in {src}.",
                         hint="Finish it or run git bisect reset first.")
    for rev in (good, bad):
        try:
            git("rev-parse", "--verify", "-q", rev + "^{commit}")
        except MpioError:
            raise SetupError(f"{rev} is not a commit in {src}.") from None


def _step(cfg: Config, git: Git, number: int, logs: Path, extra: tuple[str, ...],
          repeat: int) -> Step:
    commit = git("rev-parse", "HEAD")
    subject = git("log", "-1", "--format=%s")
    build_log = logs / f"{number:02d}-{commit[:12]}.build.log"
    built = kbuild.build(cfg, build_log, extra)
    if not built.ok:
        return Step(number, commit, subject, "skip", "build failed", built.seconds, 0, 0,
                    build_log)
    began = time.monotonic()
    try:
        _cut(cfg)
    except MpioError as e:
        if e.exit_code == ExitCode.UNTESTABLE:
            return Step(number, commit, subject, "skip", f"untestable: {e.message}",
                        built.seconds, time.monotonic() - began, 0, build_log)
        raise
    cut_seconds = time.monotonic() - began
    runs = _runs(cfg, repeat, f"step {number} ({commit[:12]})")
    mark = {ExitCode.PASS: "good", ExitCode.FAIL: "bad"}.get(runs.exit_code, "skip")
    if repeat > 1:
        why = runs.distribution().partition(": ")[2]
    else:
        verdict = runs.outcomes[0].verdict
        why = verdict.result
        if verdict.failed:
            why += ": " + ", ".join(c.name for c in verdict.failed)
    return Step(number, commit, subject, mark, why, built.seconds, cut_seconds,
                sum(o.seconds for o in runs.outcomes), runs.outcomes[-1].run_dir)


def _cut(cfg: Config) -> None:
    runner.cut(cfg, log=io.StringIO())  # the step line says it all; the files keep the rest


def _runs(cfg: Config, times: int, what: str) -> runner.Repeated:
    quiet = io.StringIO()
    runs = runner.repeat(cfg, times, out=quiet, log=quiet)
    broken = [o for o in runs.outcomes if o.verdict.exit_code == ExitCode.SETUP]
    if broken:
        raise SetupError(f"{what.capitalize()} broke the setup: {broken[0].verdict.reason}",
                         hint=f"See {broken[0].run_dir}.")
    return runs


def _confirm(cfg: Config, git: Git, first_bad: str, logs: Path, extra: tuple[str, ...],
             times: int) -> Confirmation:
    """Build and run the parent, then the first bad commit, `times` times each. The answer
    holds when every parent run PASSes and the first bad commit FAILs (any run FAILing, as
    in each step); a bisect led astray by one flipped verdict shows up here."""
    parent = git("rev-parse", f"{first_bad}^")
    distributions: dict[str, runner.Repeated] = {}
    for commit in (parent, first_bad):
        git("checkout", "-q", commit)
        log = logs / f"confirm-{commit[:12]}.build.log"
        built = kbuild.build(cfg, log, extra)
        if not built.ok:
            raise SetupError(f"{commit[:12]} built during the bisect but not for its "
                             "confirmation.", hint=f"See {log}.")
        _cut(cfg)
        distributions[commit] = _runs(cfg, times, f"confirming {commit[:12]}")
    before, after = distributions[parent], distributions[first_bad]
    confirmed = (all(o.verdict.exit_code == ExitCode.PASS for o in before.outcomes)
                 and after.exit_code == ExitCode.FAIL)
    return Confirmation(parent, before.distribution(), after.distribution(), confirmed)


def exit_code(result: Result) -> int:
    """0 a first bad commit (confirmed, when asked), 2 only skipped commits left, 3 a first
    bad commit the confirmation runs do not bear out."""
    if result.first_bad is None:
        return 2
    if result.confirmation is not None and not result.confirmation.confirmed:
        return 3
    return 0


def print_result(result: Result, out: TextIO) -> None:
    if result.first_bad:
        print(f"first bad commit: {result.first_bad[:12]} {result.subject}", file=out)
        c = result.confirmation
        if c is not None:
            word = "confirmed" if c.confirmed else "NOT confirmed"
            print(f"{word}: parent {c.parent[:12]} {c.parent_runs.partition(': ')[2]}, "
                  f"first bad {result.first_bad[:12]} {c.first_bad_runs.partition(': ')[2]}",
                  file=out)
    else:
        print("bisect ended on skipped commits; git says:", file=out)
        print("  " + "\n  ".join(result.git_says.splitlines()[:10]), file=out)
    print("artifacts of each step:", file=out)
    for s in result.steps:
        print(f"  {s.number:2d} {s.commit[:12]} {s.mark:4} {s.artifacts}", file=out)
