"""A matrix result as JUnit XML, for CI systems that show test results (GitLab, Jenkins, ...).

One <testsuite> per kernel, so a CI view groups the combinations by the kernel they ran on;
one <testcase> per combination. A negative control that failed exactly as it declares is a
passing testcase: that failure is what it is for.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from rapido_mpio.results import CombinationResult, KernelInfo, MatrixResult

TAIL_LINES = 25  # of the console, in a failure's text
# what XML 1.0 cannot carry at all, even escaped; a serial console has escape codes and NULs
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def build(result: MatrixResult) -> ET.ElementTree:
    kernels = {k.id: k for k in result.kernels}
    # kernels the results name but the kernel list lacks still get a suite
    for r in result.results:
        kernels.setdefault(r.combination.kernel,
                           KernelInfo(r.combination.kernel, r.combination.kernel, "", ""))
    root = ET.Element("testsuites", name=f"rapido-mpio {result.matrix}",
                      time=f"{result.seconds:.3f}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for kernel in kernels.values():
        results = [r for r in result.results if r.combination.kernel == kernel.id]
        if not results:
            continue
        suite = ET.SubElement(root, "testsuite", name=f"rapido-mpio.{kernel.id}")
        props = ET.SubElement(suite, "properties")
        for name, value in (("kernel.label", kernel.label), ("kernel.release", kernel.release),
                            ("kernel.source", kernel.source), ("matrix", result.matrix)):
            ET.SubElement(props, "property", name=name, value=value)
        counts = {"tests": len(results), "failures": 0, "errors": 0, "skipped": 0}
        for r in results:
            outcome = _testcase(suite, r)
            if outcome:
                counts[outcome] += 1
        suite.set("time", f"{sum(r.seconds for r in results):.3f}")
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return ET.ElementTree(root)


def write(result: MatrixResult, path: Path) -> Path:
    build(result).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _testcase(suite: ET.Element, r: CombinationResult) -> str | None:
    """Adds r's testcase; returns which count it adds to (None: a pass)."""
    case = ET.SubElement(suite, "testcase", classname=r.combination.scenario,
                         name=r.combination.id, time=f"{r.seconds:.3f}")
    outcome: str | None = None
    if r.result == "ERROR":
        ET.SubElement(case, "error", message=_safe(r.reason), type="ERROR").text = _details(r)
        outcome = "errors"
    elif r.result in ("UNTESTABLE", "SKIPPED"):
        ET.SubElement(case, "skipped", message=_safe(r.reason))
        outcome = "skipped"
    elif not r.counts_as_pass:
        message = r.reason
        if r.expect_fail:
            message = (f"Negative control that did not fail as declared (declares "
                       f"{', '.join(r.expect_fail)}). {r.reason}")
        ET.SubElement(case, "failure", message=_safe(message),
                      type=r.result).text = _details(r)
        outcome = "failures"
    out = [r.reason]
    if r.expect_fail and r.counts_as_pass:
        out.append(f"A negative control: it failed exactly as declared "
                   f"({', '.join(r.expect_fail)}), so it passes.")
    out += [f"{c.status} {c.name}: {c.observed}" for c in r.checks]
    if r.run_dir:
        out.append(f"run directory: {r.run_dir}")
    ET.SubElement(case, "system-out").text = _safe("\n".join(out) + "\n")
    return outcome


def _details(r: CombinationResult) -> str:
    lines = [f"FAILED {c.name}: {c.observed}" for c in r.failed]
    if r.log_tail:
        lines += ["", "last lines of the console:", *r.log_tail[-TAIL_LINES:]]
    return _safe("\n".join(lines) + "\n")


def _safe(text: str) -> str:
    return NOT_XML.sub("\ufffd", text)
