"""Nothing outlives a run: `kill -9` of rapido-mpio ends its QEMU at once and the next run
removes its scratch (a real boot on Debian's default kernel, with the scratch in a TMPDIR of
the test's own); an interrupted cut, which starts no QEMU, does not claim to have stopped
one. (Ctrl-C after the verdict: tests/test_stopping.py, with a stand-in QEMU, for a window
too short to hit with a real guest every time.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rapido_mpio.config import REPO_ROOT

from .conftest import qemu_processes_for, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def tmpdir_env() -> Iterator[Path]:
    """A short TMPDIR of the test's own (QEMU's sockets live in the scratch under it)."""
    path = Path(tempfile.mkdtemp(prefix="mpio-t-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def boot_until(out: Path, line: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`rapido-mpio boot`, running until its guest has said `line` (the run's protocol log)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDO_MPIO_")}
    proc = subprocess.Popen([sys.executable, "-m", "rapido_mpio", "boot", "--output-dir",
                             str(out)], cwd=REPO_ROOT, env={**full_env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    began, deadline = time.monotonic(), time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        logs = [p for p in out.glob("runs/*/protocol.log") if p.stat().st_mtime >= began - 1]
        if logs and any(ln.startswith(line) for ln in logs[0].read_text().splitlines()):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the guest never said {line}: {proc.communicate()}")


def test_kill_9_of_the_tool_ends_qemu_and_the_next_run_removes_its_scratch(
        out: Path, tmpdir_env: Path) -> None:
    proc = boot_until(out, "@@MPIO:SCENARIO", {"TMPDIR": str(tmpdir_env)})  # mid-scenario
    assert len(qemu_processes_for(out)) == 1
    proc.kill()
    killed = time.monotonic()
    proc.wait()
    while qemu_processes_for(out) and time.monotonic() - killed < 10:
        time.sleep(0.01)
    seconds = time.monotonic() - killed
    print(f"QEMU gone {seconds:.3f}s after kill -9 of rapido-mpio")
    assert qemu_processes_for(out) == [], "QEMU outlived rapido-mpio"
    assert seconds < 3
    (leaked,) = tmpdir_env.glob("rapido-mpio-*")  # its disks and sockets: nobody removed them
    assert (leaked / "owner.lock").exists()
    # the next run (its QEMU fails at once here: what counts is that it started)
    run_cli("boot", "--output-dir", str(out), "--qemu", "false",
            env={"TMPDIR": str(tmpdir_env)})
    assert not leaked.exists()
    assert list(tmpdir_env.iterdir()) == []


def test_interrupted_cut_does_not_claim_a_qemu(tmp_path: Path) -> None:
    """A cut starts no QEMU: interrupted, it says just that."""
    from rapido_mpio.config import load

    cache = tmp_path / "cache"  # cold layers (they take seconds), the kernel already there
    cache.mkdir()
    (cache / "kernels").symlink_to(load({}, environ={}).cache_dir / "kernels")
    proc = subprocess.Popen([sys.executable, "-m", "rapido_mpio", "cut", "--output-dir",
                             str(tmp_path / "out"), "--cache-dir", str(cache)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(cache.iterdir())) < 2 and time.monotonic() < deadline:  # cutting now
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255, err
    assert err.strip().endswith("rapido-mpio: interrupted."), err
    assert "QEMU" not in err
