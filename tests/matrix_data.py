"""MatrixResults for the report tests: built around real run directories (their result.json),
plus combinations that never booted, so every verdict a report shows is there."""

from __future__ import annotations

import json
from pathlib import Path

from rapido_mpio.results import (
    CheckResult,
    Combination,
    CombinationResult,
    KernelInfo,
    MatrixResult,
)

DATA = Path(__file__).resolve().parent / "data"
FIXTURE_RUNS = DATA / "runs"
KERNEL = KernelInfo("default", "Debian linux-image-6.1.0-56-amd64", "6.1.0-56-amd64",
                    "linux-image-amd64")


def from_run(run_dir: Path, out_dir: Path, kernel: str = "default",
             selector: str | None = None) -> CombinationResult:
    """What the matrix runner records for one run, from the run's result.json."""
    d = json.loads((run_dir / "result.json").read_text())
    return CombinationResult.from_run(Combination(d["scenario"], kernel, selector=selector), d,
                                      str(run_dir.relative_to(out_dir)))


def synthetic() -> list[CombinationResult]:
    """The verdicts real runs of a good kernel do not give: a FAIL, a control that did not fail
    as declared, an untestable kernel, a broken setup (none with a run directory)."""
    return [
        CombinationResult(
            Combination("failover", "default", selector="queue-length", fault="offline"),
            "FAIL", 1, "Failed: path_io.",
            checks=(CheckResult("mounted", "PASS", "yes"),
                    CheckResult("path_io", "FAIL", "down_8:0_+47_up_8:16_+47:_down_path_8:0_"
                                "got_47_(max_2)")),
            seconds=7.4, log_tail=("[    7.1] sd 0:0:0:0: [sda] tag#1 <ctrl>\x1b[0m\x00",
                                   "@@MPIO:VERDICT failover FAIL 9")),
        CombinationResult(
            Combination("all-paths-lost", "default", selector="service-time"),
            "PASS", 0, "Every check passed.", seconds=9.0,
            expect_fail=("io_after_fault", "data_intact", "path_io"), as_declared=False),
        CombinationResult(
            Combination("failover", "default", selector="historical-service-time"),
            "UNTESTABLE", 125, "The kernel has no dm-historical-service-time module.",
            seconds=2.1),
        CombinationResult(
            Combination("reinstate", "default", grouping="group_by_prio"),
            "ERROR", 255, "QEMU refused to start.", seconds=0.2),
    ]


def matrix(results: list[CombinationResult], seconds: float = 42.0) -> MatrixResult:
    return MatrixResult(matrix="matrix.yaml", shards=("1/1",), seconds=seconds, jobs=1,
                        kernels=(KERNEL,), results=tuple(results))


def fixture_matrix() -> tuple[MatrixResult, Path]:
    """The fixture runs (a failover and a reinstate, both PASS) and the synthetic ones; the
    matrix's output directory is tests/data."""
    runs = [from_run(d, DATA) for d in sorted(FIXTURE_RUNS.iterdir())]
    return matrix([*runs, *synthetic()]), DATA
