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
class Result:
    first_bad: str | None  # None: skipped commits left it open
    subject: str
    steps: tuple[Step, ...]
    git_says: str


class Git:
    def __init__(self, tree: Path) -> None:
        command.require("git", "git")
        self.tree = tree

    def __call__(self, *args: str) -> str:
        return command.run(["git", "-C", str(self.tree), *args]).strip()


def bisect(cfg: Config, good: str, bad: str, extra: tuple[str, ...] = (),
           out: TextIO = sys.stdout) -> Result:
    tree = kbuild.tree_of(cfg)
    git = Git(tree.src)
    _refuse_unusable(git, tree.src, good, bad)
    logs = cfg.output_dir / "bisect"
    logs.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []
    said = git("bisect", "start", bad, good)
    try:
        while True:
            step = _step(cfg, git, len(steps) + 1, logs, extra)
            steps.append(step)
            print(f"bisect step {step.number}: {step.commit[:12]} {step.mark:4} "
                  f"({step.why}) build {step.build_seconds:.1f}s cut {step.cut_seconds:.2f}s "
                  f"boot {step.boot_seconds:.1f}s  {step.subject[:60]}", file=out, flush=True)
            said = git("bisect", step.mark)
            found = FIRST_BAD.search(said)
            if found:
                subject = git("log", "-1", "--format=%s", found.group(1))
                return Result(found.group(1), subject, tuple(steps), said)
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


def _step(cfg: Config, git: Git, number: int, logs: Path, extra: tuple[str, ...]) -> Step:
    commit = git("rev-parse", "HEAD")
    subject = git("log", "-1", "--format=%s")
    build_log = logs / f"{number:02d}-{commit[:12]}.build.log"
    built = kbuild.build(cfg, build_log, extra)
    if not built.ok:
        return Step(number, commit, subject, "skip", "build failed", built.seconds, 0, 0,
                    build_log)
    quiet = io.StringIO()  # the step line says it all; the run's files keep the detail
    began = time.monotonic()
    try:
        runner.cut(cfg, log=quiet)
    except MpioError as e:
        if e.exit_code == ExitCode.UNTESTABLE:
            return Step(number, commit, subject, "skip", f"untestable: {e.message}",
                        built.seconds, time.monotonic() - began, 0, build_log)
        raise
    cut_seconds = time.monotonic() - began
    outcome = runner.boot(cfg, out=quiet, log=quiet)
    code = outcome.verdict.exit_code
    if code == ExitCode.SETUP:
        raise SetupError(f"Step {number} ({commit[:12]}) broke the setup: "
                         f"{outcome.verdict.reason}", hint=f"See {outcome.run_dir}.")
    mark = {ExitCode.PASS: "good", ExitCode.FAIL: "bad"}.get(code, "skip")
    why = outcome.verdict.result
    if outcome.verdict.failed:
        why += ": " + ", ".join(c.name for c in outcome.verdict.failed)
    return Step(number, commit, subject, mark, why, built.seconds, cut_seconds,
                outcome.seconds, outcome.run_dir)


def print_result(result: Result, out: TextIO) -> None:
    if result.first_bad:
        print(f"first bad commit: {result.first_bad[:12]} {result.subject}", file=out)
    else:
        print("bisect ended on skipped commits; git says:", file=out)
        print("  " + "\n  ".join(result.git_says.splitlines()[:10]), file=out)
    print("artifacts of each step:", file=out)
    for s in result.steps:
        print(f"  {s.number:2d} {s.commit[:12]} {s.mark:4} {s.artifacts}", file=out)
