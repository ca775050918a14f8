"""What a run starts ends with it: a child dies with its parent even under SIGKILL, the scratch
of a dead run is removed by the next and a live run's never, and no interrupt falls between
starting a process and registering its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rapido_mpio import lifetime


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie left for whoever reaps orphans."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def gone_within(pid: int, seconds: float) -> float | None:
    """Seconds until `pid` is gone, or None if it still runs after `seconds`."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if not alive(pid):
            return time.monotonic() - began
        time.sleep(0.01)
    return None


def python(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("death_signal", ["SIGKILL", "SIGTERM"])
def test_child_dies_with_its_parent_killed_by_sigkill(death_signal: str) -> None:
    """QEMU (SIGKILL) and a matrix's children (SIGTERM, to stop their own QEMU) outlive no
    parent, however it ends."""
    parent = python(f"""
        import signal, time
        from rapido_mpio import lifetime
        child = lifetime.spawn(["sleep", "300"], signal.{death_signal})
        print(child.pid, flush=True)
        time.sleep(300)
    """)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.kill()
        parent.wait()
        assert gone_within(child, 5) is not None, "the child outlived its parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_child_of_a_parent_already_dead_does_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent died between fork and prctl: no death signal would ever come, so the child
    ends itself instead of running on alone (here the child "was reparented" to init)."""
    monkeypatch.setattr(os, "getppid", lambda: 1)
    proc = lifetime.spawn(["sleep", "300"], signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_interrupt_waits_for_the_end_of_the_block() -> None:
    reached = False
    with pytest.raises(KeyboardInterrupt), lifetime.signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached = True
    assert reached
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_next_run_removes_a_dead_runs_scratch_and_no_live_one(tmp_path: Path) -> None:
    dead = python(f"""
        import time
        from pathlib import Path
        from rapido_mpio import lifetime
        with lifetime.scratch_dir(Path({str(tmp_path)!r})) as scratch:
            (scratch / "lun0.img").write_bytes(b"x" * 4096)
            print(scratch, flush=True)
            time.sleep(300)
    """)
    assert dead.stdout is not None
    leaked = Path(dead.stdout.readline().strip())
    dead.kill()  # as kill -9: no cleanup of its own
    dead.wait()
    assert (leaked / "lun0.img").exists()
    foreign = tmp_path / "rapido-mpio-from-an-older-version"  # no lock: cannot tell, kept
    foreign.mkdir()
    with lifetime.scratch_dir(tmp_path) as live:
        assert not leaked.exists(), "the dead run's scratch was left"
        assert lifetime.remove_dead_scratch(tmp_path) == []  # the live one is kept
        assert live.is_dir() and foreign.is_dir()
        assert live.name.startswith(f"rapido-mpio-{os.getpid()}-")  # whose it is, for a human
    assert not live.exists()
