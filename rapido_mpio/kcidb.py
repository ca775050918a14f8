"""A matrix result in KernelCI's KCIDB I/O format (schema v5), for `kcidb-submit` or a
dashboard that reads it.

One checkout and one build per kernel (rapido-mpio builds nothing itself; the build is the
kernel image it booted), one test per combination. Every id starts with the origin, as the
schema demands. Output files are file:// URLs to the run directory: usable on this machine,
to be rewritten by whoever uploads the artifacts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rapido_mpio.results import CombinationResult, KernelInfo, MatrixResult

SCHEMA_VERSION = {"major": 5, "minor": 3}
ORIGIN = re.compile(r"^[a-z0-9_]+$")  # the schema's origin pattern
# a test path is dot-separated words of these characters
NOT_PATH_WORD = re.compile(r"[^a-zA-Z0-9_-]")
# what a run directory holds that is worth a link (the rest is scenario input)
ARTIFACTS = ("console.log", "result.json", "protocol.log", "kmsg.txt", "multipathd-log.txt",
             "qemu-cmd.sh")
LOG_EXCERPT_MAX = 16384  # the schema's maxLength


def build(result: MatrixResult, out_dir: Path, origin: str = "rapido_mpio") -> dict[str, Any]:
    """out_dir: the matrix's output directory, which run_dirs are relative to."""
    if not ORIGIN.match(origin):
        raise ValueError(f"KCIDB origin {origin!r}: only a-z, 0-9 and _ are allowed")
    kernels = {k.id: k for k in result.kernels}
    for r in result.results:
        kernels.setdefault(r.combination.kernel,
                           KernelInfo(r.combination.kernel, r.combination.kernel, "", ""))
    return {
        "version": dict(SCHEMA_VERSION),
        "checkouts": [_checkout(k, origin) for k in kernels.values()],
        "builds": [_build(k, origin) for k in kernels.values()],
        "tests": [_test(r, out_dir, origin) for r in result.results],
    }


def write(result: MatrixResult, out_dir: Path, path: Path,
          origin: str = "rapido_mpio") -> Path:
    path.write_text(json.dumps(build(result, out_dir, origin), indent=2) + "\n")
    return path


def test_path(r: CombinationResult) -> str:
    """rapido_mpio.<scenario>.<selector>.<grouping>.<fault>[.<env>...]; the kernel is the
    build's, not the path's, so one test compares across kernels."""
    c = r.combination
    words = ["rapido_mpio", c.scenario, c.selector or "default", c.grouping or "default",
             c.fault or "default", *(f"{k}-{v}" for k, v in c.env)]
    return ".".join(NOT_PATH_WORD.sub("_", w) or "_" for w in words)


def _checkout(k: KernelInfo, origin: str) -> dict[str, Any]:
    return {"id": f"{origin}:checkout:{k.id}", "origin": origin,
            "comment": k.label or k.id, "misc": {"source": k.source}}


def _build(k: KernelInfo, origin: str) -> dict[str, Any]:
    return {
        "id": f"{origin}:build:{k.id}", "checkout_id": f"{origin}:checkout:{k.id}",
        "origin": origin, "comment": k.label or k.id, "architecture": "x86_64",
        "misc": {"kernel_id": k.id, "release": k.release, "source": k.source}}


def _test(r: CombinationResult, out_dir: Path, origin: str) -> dict[str, Any]:
    test: dict[str, Any] = {
        "id": f"{origin}:{r.combination.id}",
        "build_id": f"{origin}:build:{r.combination.kernel}",
        "origin": origin, "path": test_path(r), "status": _status(r),
        "duration": r.seconds, "comment": r.reason.replace("\0", ""),
        "misc": {"combination": r.combination.to_json(), "result": r.result,
                 "exit_code": r.exit_code,
                 "checks": [{"name": c.name, "status": c.status, "observed": c.observed}
                            for c in r.checks],
                 "negative_control": None if not r.expect_fail else {
                     "expect_fail": list(r.expect_fail), "as_declared": r.as_declared},
                 "run_dir": r.run_dir},
    }
    if test["misc"]["negative_control"] is None:
        del test["misc"]["negative_control"]  # the schema forbids nulls
    excerpt = "\n".join([*(f"FAILED {c.name}: {c.observed}" for c in r.failed), *r.log_tail])
    if excerpt:
        # the schema's strings may hold anything but NUL, which a serial console can print
        test["log_excerpt"] = excerpt.replace("\0", "")[-LOG_EXCERPT_MAX:]
    if r.run_dir:
        run_dir = (out_dir / r.run_dir).resolve()
        files = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
        if run_dir / "console.log" in files:
            test["log_url"] = (run_dir / "console.log").as_uri()
            files.remove(run_dir / "console.log")
        files += sorted(f for f in run_dir.glob("*.txt") if f not in files)
        if files:
            test["output_files"] = [{"name": f.name, "url": f.as_uri()} for f in files]
    return test


def _status(r: CombinationResult) -> str:
    """PASS also for a negative control that failed as declared; UNTESTABLE is SKIP (the
    kernel cannot run it), ERROR stays ERROR (the setup broke, not the kernel)."""
    if r.result == "ERROR":
        return "ERROR"
    if r.result in ("UNTESTABLE", "SKIPPED"):
        return "SKIP"
    return "PASS" if r.counts_as_pass else "FAIL"
