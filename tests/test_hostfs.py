"""The host's file systems: full, read-only or deep in a long path, a run ends in one
sentence naming the file system and exit 255, never a verdict (issue 15, cases 1 and 12).

The file systems are small tmpfs mounts made here (so these tests need root); the disk-full
and the long-TMPDIR cases boot a real QEMU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_cli


@pytest.mark.integration
def test_long_tmpdir_boots_to_pass(out: Path, tmp_path: Path) -> None:
    """Before, a TMPDIR of 90+ characters left no room for a socket path (108 bytes)."""
    tmpdir = tmp_path / ("a-rather-long-directory-name-" * 6)
    tmpdir.mkdir()
    assert len(str(tmpdir)) > 150
    p = run_cli("boot", "--output-dir", str(out), env={"TMPDIR": str(tmpdir)})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: PASS" in p.stdout
    assert list(tmpdir.iterdir()) == []  # the scratch dir is gone with the run
    script = (out / "last/qemu-cmd.sh").read_text()  # still the sockets socat can reach
    assert "path='\"$RUN\"'/proto.sock,server=on,wait=off'" in script
