"""A hostile or broken guest, played by a stand-in QEMU (tests/fake_qemu.py) through the
real CLI: every line outside the protocol ends the run as ERROR (255) with one sentence
naming the line, result.json is written, nothing lands outside the run directory, and no
traceback."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli
from .test_bad_input import _fake_image

FAKE_QEMU = Path(__file__).resolve().parent / "fake_qemu.py"
# what init sends before the scenario runs
PREAMBLE = b"@@MPIO:START failover 1.5\n@@MPIO:STEP modules 60\n@@MPIO:SCENARIO failover\n"
# and what a scenario that passes ends with: a hostile line must not hide behind it
EPILOGUE = (b"@@MPIO:CHECK map_paths PASS 2_active\n@@MPIO:VERDICT failover PASS 1\n"
            b"@@MPIO:EVENT END\n")
ESCAPE = "ESCAPED"  # the absolute block name's target, under the test's own directory

HOSTILE = {
    "block-name-parent": (b"@@MPIO:BEGIN ../../x\n@@MPIO:LINE ../../x owned\n"
                          b"@@MPIO:STOP ../../x\n", "../../x"),
    "block-name-absolute": (b"@@MPIO:BEGIN {abs}\n@@MPIO:LINE {abs} owned\n"
                            b"@@MPIO:STOP {abs}\n", ESCAPE),
    "empty-event": (b"@@MPIO:EVENT\n", "EVENT"),
    "empty-action": (b"@@MPIO:ACTION\n", "ACTION"),
    "fractional-lun": (b"@@MPIO:EVENT fail_path 0.5 1\n", "0.5"),
    "superscript-digit": ("@@MPIO:EVENT fail_path \u00b2 1\n".encode(), "\\xb2"),
    "nul-in-block-name": (b"@@MPIO:BEGIN a\0b\n@@MPIO:LINE a\0b x\n@@MPIO:STOP a\0b\n",
                          "a\\x00b"),
    "empty-io-line": (b"@@MPIO:BEGIN io-x\n@@MPIO:LINE io-x \n@@MPIO:STOP io-x\n", "io-x"),
    "flap-count-huge": (b"@@MPIO:EVENT flap_path 0 0 1000 999999999999\n", "999999999999"),
    "line-of-4-mib": (b"@@MPIO:LINE kmsg " + b"x" * (4 << 20) + b"\n", "longer than"),
}


def _boot(tmp_path: Path, guest: bytes) -> tuple[int, str, str, Path]:
    out = tmp_path / "out"
    _fake_image(out)
    (tmp_path / "guest").write_bytes(guest)
    qemu = tmp_path / "qemu-system-x86_64"  # a name the tool's own process checks know
    qemu.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_QEMU} \"$@\"\n")
    qemu.chmod(0o755)
    # short timeouts: a guest the host stops reading from must not hold the test for long
    p = run_cli("boot", "--output-dir", str(out), "--accel", "tcg", "--qemu", str(qemu),
                "--boot-timeout", "20", "--scenario-timeout", "20",
                cwd=tmp_path, env={"FAKE_QEMU_GUEST": str(tmp_path / "guest")}, timeout=120)
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 1
    return p.returncode, p.stdout, p.stderr, runs[0]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_line_is_a_protocol_error(tmp_path: Path, case: str) -> None:
    lines, named = HOSTILE[case]
    began = time.monotonic()
    code, stdout, stderr, run_dir = _boot(
        tmp_path, PREAMBLE + lines.replace(b"{abs}", str(tmp_path / ESCAPE).encode()) + EPILOGUE)
    seconds = time.monotonic() - began
    assert code == 255, stdout + stderr
    assert "Traceback" not in stderr, stderr
    verdict = [ln for ln in stdout.splitlines() if ln.startswith("rapido-mpio: ")]
    assert len(verdict) == 1 and "ERROR (exit 255)" in verdict[0], stdout
    assert "protocol error" in verdict[0] and named in verdict[0], verdict[0]
    assert len(verdict[0]) < 600  # the offending line is cut short, never 4 MB of it
    result = json.loads((run_dir / "result.json").read_text())
    assert result["result"] == "ERROR" and result["exit_code"] == 255
    # nothing but the run directory and the image (made before) under the test's directory
    outside = [p for p in tmp_path.rglob("*") if p.is_file()
               and run_dir not in p.parents and (tmp_path / "out/image") not in p.parents
               and p.name not in ("guest", "qemu-system-x86_64")]
    assert outside == [], outside
    assert seconds < 30  # the 4 MiB line is scanned once, not once per chunk


def test_a_good_guest_still_passes(tmp_path: Path) -> None:
    """The same stand-in, speaking the protocol as the real guest does, gets a verdict: the
    decoder refuses only what is outside the protocol."""
    guest = PREAMBLE + (b"@@MPIO:STEP fault 35\n@@MPIO:EVENT fail_path 0 1\n"
                        b"@@MPIO:ACTION offline_path 0 1 2:0:0:1\n"
                        b"@@MPIO:BEGIN io-end\n"
                        b"@@MPIO:LINE io-end 8:16 remapped=12 iorequest=30 ioerr=0\n"
                        b"@@MPIO:STOP io-end\n"
                        + EPILOGUE)
    code, stdout, stderr, run_dir = _boot(tmp_path, guest)
    assert code == 0, stdout + stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["path_io"] == {"end": {"8:16": {"remapped": 12, "iorequest": 30, "ioerr": 0}}}
    assert [a["action"] for a in result["actions"]] == ["fail_path", "offline_path"]
    assert (run_dir / "io-end.txt").read_text() == "8:16 remapped=12 iorequest=30 ioerr=0\n"
