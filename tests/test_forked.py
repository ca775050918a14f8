"""forked.run: --repeat's children. Each runs the task in a process of its own, the results
come back whole, a child's error is the parent's, and no child outlives the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rapido_mpio import forked
from rapido_mpio.errors import ExitCode, MpioError, UntestableKernel


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead but still there until reaped; its state says so
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _note_pid(directory: Path, i: int) -> None:
    """pid-I holds the child's pid, whole once it exists (renamed into place)."""
    (directory / f".{i}").write_text(str(os.getpid()))
    (directory / f".{i}").rename(directory / f"pid-{i}")


def test_each_result_comes_back_and_no_more_run_at_once(tmp_path: Path) -> None:
    def task(i: int) -> tuple[int, int, int, dict[str, list[int]]]:
        mark = tmp_path / f"running-{i}"
        mark.touch()
        deadline = time.monotonic() + 5  # until a second child runs too (or none will)
        while len(list(tmp_path.glob("running-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = len(list(tmp_path.glob("running-*")))
        mark.unlink()
        return i, os.getpid(), seen, {"big": list(range(50_000))}  # > one pipe buffer

    results = list(forked.run(task, 5, 2))
    assert sorted(r[0] for r in results) == [0, 1, 2, 3, 4]
    assert os.getpid() not in {r[1] for r in results} and len({r[1] for r in results}) == 5
    assert max(r[2] for r in results) == 2  # two at once, never three
    assert all(r[3]["big"][-1] == 49_999 for r in results)
    assert _wait_gone([r[1] for r in results], 0) == []  # each reaped


def test_a_childs_error_is_the_parents_with_its_exit_code() -> None:
    def task(i: int) -> int:
        raise UntestableKernel("The kernel lacks CONFIG_DM_MULTIPATH.", hint="Enable it.")

    with pytest.raises(MpioError) as caught:
        list(forked.run(task, 1, 1))
    assert caught.value.exit_code == ExitCode.UNTESTABLE
    assert str(caught.value) == "The kernel lacks CONFIG_DM_MULTIPATH. Enable it."


def test_a_bug_in_a_child_is_reported_with_its_traceback() -> None:
    def task(i: int) -> int:
        return int("missing")

    with pytest.raises(RuntimeError, match="ValueError: invalid literal"):
        list(forked.run(task, 1, 1))


def test_a_child_killed_mid_way_is_one_sentence(tmp_path: Path) -> None:
    def task(i: int) -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    with pytest.raises(MpioError, match=r"ended without an outcome \(killed by signal 9\)"):
        list(forked.run(task, 1, 1))


def test_stopping_early_stops_every_child(tmp_path: Path) -> None:
    def task(i: int) -> int:
        _note_pid(tmp_path, i)
        if i == 0:
            return i
        time.sleep(300)  # SIGTERM's default action ends it (no run's handler here)
        return i

    results = forked.run(task, 3, 3)
    assert next(results) == 0
    deadline = time.monotonic() + 10
    while len(list(tmp_path.glob("pid-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p.read_text()) for p in tmp_path.glob("pid-*")]
    results.close()  # as an exception in the caller would
    assert len(pids) == 3
    assert _wait_gone(pids, 0) == []  # stopped and reaped before close() returned


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL gives the parent no cleanup: the parent-death signal ends its children."""
    script = textwrap.dedent(f"""
        import os, time
        from rapido_mpio import forked
        def task(i):
            d = {str(tmp_path)!r}
            open(f"{{d}}/.{{i}}", "w").write(str(os.getpid()))
            os.rename(f"{{d}}/.{{i}}", f"{{d}}/pid-{{i}}")
            time.sleep(300)
        list(forked.run(task, 2, 2))
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("pid-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p.read_text()) for p in tmp_path.glob("pid-*")]
    assert len(pids) == 2
    parent.kill()
    parent.wait()
    assert _wait_gone(pids) == []
