"""Kernel coverage of dm-multipath from a matrix run on a gcov build.

Each combination's guest sent its counters as blocks gcov-NAME (base64 of debugfs's .gcda).
They are turned back into .gcda files beside the gcov build's .gcno, read by gcovr per
combination (which combination first reached a function needs each one alone), and merged
by gcovr into the whole: its HTML gives every line, our record gives the figures.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rapido_mpio import command
from rapido_mpio.errors import SetupError
from rapido_mpio.gcovbuild import GcovBuild
from rapido_mpio.inputs import Record, parse_json
from rapido_mpio.kernel import read_config
from rapido_mpio.results import MatrixResult

FORMAT = 1
BLOCK = "gcov-"  # the guest's block name for a file's counters: gcov-dm-mpath
# on the kernel command line, it asks the guest for its counters (lib.sh: mpio_gcov_send);
# a dotted name the kernel takes for an unknown module's parameter, and ignores
GUEST_ARG = "rapido_mpio.gcov=1"


@dataclasses.dataclass(frozen=True)
class FunctionCoverage:
    file: str  # relative to the source tree: drivers/md/dm-mpath.c
    name: str
    line: int
    count: int  # calls, over every combination
    first: str  # the first combination (matrix order) that called it; "" if none did


@dataclasses.dataclass(frozen=True)
class FileCoverage:
    file: str
    lines: int
    lines_hit: int
    functions: int
    functions_hit: int


@dataclasses.dataclass(frozen=True)
class Coverage:
    kernel: str  # the gcov build directory
    matrix: str
    files: tuple[FileCoverage, ...]
    functions: tuple[FunctionCoverage, ...]
    counted: tuple[str, ...]  # combinations whose counters were read
    uncounted: tuple[tuple[str, str], ...]  # (combination, why its counters are missing)

    @property
    def unreached(self) -> list[FunctionCoverage]:
        return [f for f in self.functions if f.count == 0]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "kernel": self.kernel, "matrix": self.matrix,
                "files": [dataclasses.asdict(f) for f in self.files],
                "functions": [dataclasses.asdict(f) for f in self.functions],
                "counted": list(self.counted),
                "uncounted": [{"combination": c, "why": w} for c, w in self.uncounted]}

    def text(self) -> str:
        """The report a human reads: figures per file, what was not reached, and which
        combination first reached each function."""
        out = [f"dm-multipath coverage: {self.kernel}, matrix {self.matrix}: "
               f"{len(self.counted)} combinations counted"
               + (f", {len(self.uncounted)} not" if self.uncounted else ""), ""]
        width = max([len(f.file) for f in self.files] + [5])
        out.append(f"{'file':<{width}}  {'functions':>15}  {'lines':>17}")
        for f in [*self.files, self.total()]:
            out.append(f"{f.file:<{width}}  {_ratio(f.functions_hit, f.functions):>15}  "
                       f"{_ratio(f.lines_hit, f.lines):>17}")
        out += ["", "Functions not reached:"]
        out += [f"  {f.file}:{f.line} {f.name}" for f in self.unreached] or ["  none"]
        if self.uncounted:
            out += ["", "Combinations without counters:"]
            out += [f"  {c}: {why}" for c, why in self.uncounted]
        out += ["", "First reached by:"]
        out += [f"  {f.file}:{f.line} {f.name}: {f.first}" for f in self.functions if f.first]
        return "\n".join(out) + "\n"

    def total(self) -> FileCoverage:
        return FileCoverage("total", sum(f.lines for f in self.files),
                            sum(f.lines_hit for f in self.files),
                            sum(f.functions for f in self.files),
                            sum(f.functions_hit for f in self.files))


def _ratio(hit: int, total: int) -> str:
    return f"{hit}/{total} {100 * hit / total:5.1f}%" if total else "0/0"


def collect(result: MatrixResult, root: Path, built: GcovBuild, out: Path) -> Coverage:
    """Read every combination's counters (run directories are relative to `root`) and write
    coverage.json, coverage.txt and gcovr's line-by-line HTML (html/index.html) in `out`."""
    gcov = _gcov_tool(built.build)
    out.mkdir(parents=True, exist_ok=True)
    counted: list[str] = []
    uncounted: list[tuple[str, str]] = []
    first: dict[tuple[str, str], str] = {}
    # a matrix may name other kernels too: only the gcov build's runs have counters
    counting = {k.id for k in result.kernels if k.source == str(built.src)}
    with tempfile.TemporaryDirectory(prefix=".coverage-", dir=out) as tmp:
        traces = []
        for i, r in enumerate(result.results):
            cid = r.combination.id
            if r.combination.kernel not in counting:
                uncounted.append((cid, "its kernel is not the gcov build"))
                continue
            if not r.run_dir:
                uncounted.append((cid, f"it did not boot ({r.result})"))
                continue
            objdir = Path(tmp) / f"{i:03d}"
            why = _unpack(root / r.run_dir, built, objdir)
            if why:
                uncounted.append((cid, why))
                continue
            trace = Path(tmp) / f"{i:03d}.json"
            why = _gcovr(built, gcov, [str(objdir), "--object-directory", str(objdir),
                                       "--json", str(trace)])
            if why:
                uncounted.append((cid, why))
                continue
            traces.append(trace)
            counted.append(cid)
            for file, fn in _functions(trace):
                if fn.get("execution_count", int) > 0:
                    first.setdefault((file, fn.get("name", str)), cid)
        if not traces:
            raise SetupError("No combination sent gcov counters, so there is no coverage.",
                             hint="See each run's console.log: was debugfs mounted?")
        merged, summary = out / "coverage-gcovr.json", Path(tmp) / "summary.json"
        html = out / "html"
        shutil.rmtree(html, ignore_errors=True)
        html.mkdir()
        why = _gcovr(built, gcov, [arg for t in traces for arg in ("--add-tracefile", str(t))]
                     + ["--json", str(merged), "--json-summary", str(summary),
                        "--html-details", str(html / "index.html")])
        if why:
            raise SetupError(f"gcovr could not merge the counters: {why}")
        files = tuple(_file_summary(r) for r in _records(summary, "files"))
        functions = tuple(
            FunctionCoverage(file, fn.get("name", str), fn.get("lineno", int),
                             fn.get("execution_count", int),
                             first.get((file, fn.get("name", str)), ""))
            for file, fn in _functions(merged))
    coverage = Coverage(str(built.build), result.matrix, files, functions, tuple(counted),
                        tuple(uncounted))
    (out / "coverage.json").write_text(json.dumps(coverage.to_json(), indent=1) + "\n")
    (out / "coverage.txt").write_text(coverage.text())
    return coverage


def _unpack(run: Path, built: GcovBuild, objdir: Path) -> str:
    """The run's gcov blocks as .gcda files under objdir, each beside a link to its .gcno;
    why not, or ""."""
    by_stem = {Path(c).stem: c for c in built.counted}
    blocks = sorted(run.glob(f"{BLOCK}*.txt"))
    if not blocks:
        return "the guest sent no counters (it did not reach the end of the run?)"
    for block in blocks:
        source = by_stem.get(block.name[len(BLOCK):-len(".txt")])
        if source is None:
            return f"{block.name} names no file the gcov build counts"
        try:
            data = base64.b64decode(b"".join(block.read_bytes().split()), validate=True)
        except (binascii.Error, ValueError):
            return f"{block.name} is not base64"
        gcda = objdir / Path(source).with_suffix(".gcda")
        gcda.parent.mkdir(parents=True, exist_ok=True)
        gcda.write_bytes(data)
        gcda.with_suffix(".gcno").symlink_to(built.build / Path(source).with_suffix(".gcno"))
    return ""


def _gcov_tool(build: Path) -> str:
    """The gcov of the compiler that built the kernel: counters are per compiler version."""
    config = read_config(build / ".config")
    if config.get("CONFIG_CC_IS_CLANG") == "y":
        return "llvm-cov gcov"
    version = config.get("CONFIG_GCC_VERSION", "")
    major = f"gcov-{int(version) // 10000}" if version.isdigit() else "gcov"
    for tool in (major, "gcov"):
        if shutil.which(tool):
            return tool
    raise SetupError(f"{major} is not installed; it reads the counters of {build}.",
                     hint="Install the gcc package that built the kernel.")


def _gcovr(built: GcovBuild, gcov: str, args: list[str]) -> str:
    """Run gcovr on the counted files; what went wrong, or ""."""
    # gcovr is a tool with a command line, not a library API: run it as its authors do
    argv = [sys.executable, "-m", "gcovr", "--root", str(built.src), "--gcov-executable",
            gcov, *[a for c in built.counted
                    for a in ("--filter", re.escape(str(built.src / c)) + "$")], *args]
    try:
        command.run(argv)
    except SetupError as e:
        return e.message
    return ""


def _records(path: Path, key: str) -> list[Record]:
    return Record(parse_json(path.read_text()), path.name).records(key)


def _functions(path: Path) -> list[tuple[str, Record]]:
    return [(f.get("file", str), fn) for f in _records(path, "files")
            for fn in f.records("functions")]


def _file_summary(r: Record) -> FileCoverage:
    return FileCoverage(r.get("filename", str), r.get("line_total", int),
                        r.get("line_covered", int), r.get("function_total", int),
                        r.get("function_covered", int))
