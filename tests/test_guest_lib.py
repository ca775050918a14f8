"""The guest's helper library, run with the host's busybox: the verdict line it writes is
the one the host parses, and its clock helper survives the values a guest sees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rapido_mpio.config import REPO_ROOT
from rapido_mpio.verdict import parse_verdict_line

LIB = REPO_ROOT / "cut/rootfs/usr/lib/mpio/lib.sh"


def guest_sh(script: str, tmp_path: Path, **env: str) -> str:
    """Run `script` in busybox sh with lib.sh sourced; fd 3 (the host channel) is a file."""
    channel = tmp_path / "channel"
    full = (f"exec 3>{channel}\nMPIO_CHECKS={tmp_path}/checks\nMPIO_SCENARIO=failover\n"
            f". {LIB}\nMPIO_CHECKS={tmp_path}/checks\n{script}\n")
    subprocess.run(["busybox", "sh", "-c", full], check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", **env})
    return channel.read_text()


def test_verdict_line_is_what_the_host_parses(tmp_path: Path) -> None:
    out = guest_sh('mpio_check map_paths PASS "2 active"\n'
                   'mpio_expect data_intact abc "a,b=c d"\n'
                   "mpio_verdict", tmp_path)
    line = next(ln for ln in out.splitlines() if ln.startswith("@@MPIO:VERDICT "))
    scenario, result, checks = parse_verdict_line(line.removeprefix("@@MPIO:VERDICT "))
    assert (scenario, result) == ("failover", "FAIL")
    assert [(c.name, c.status) for c in checks] == [("map_paths", "PASS"),
                                                    ("data_intact", "FAIL")]
    assert checks[0].observed == "2_active"
    assert " " not in checks[1].observed and "," not in checks[1].observed


def test_no_checks_is_a_fail(tmp_path: Path) -> None:
    out = guest_sh("mpio_verdict", tmp_path)
    assert "@@MPIO:VERDICT failover FAIL scenario_ran=FAIL:" in out


@pytest.mark.parametrize("uptime, cs", [("0.07 1.00", 7), ("0.79 0.1", 79),
                                        ("12.34 20.00", 1234), ("100.00 1", 10000)])
def test_uptime_in_hundredths(tmp_path: Path, uptime: str, cs: int) -> None:
    (tmp_path / "uptime").write_text(uptime + "\n")
    out = guest_sh('echo "$(mpio_uptime_cs)" >&3', tmp_path,
                   MPIO_UPTIME_FILE=str(tmp_path / "uptime"))
    assert out.strip() == str(cs)
