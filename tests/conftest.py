"""Shared helpers: run the real CLI, and make sure no QEMU outlives its run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rapido_mpio.config import REPO_ROOT


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C tests send SIGINT to themselves and to their children. A suite started in the
    background by a shell without job control (`cmd &`, nohup) inherits SIGINT ignored, and
    the children an ignored signal; Python's own handler, restored here, gives them the
    disposition a user's terminal gives (an exec resets a handled signal to the default)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def mpio() -> Any:
    return run_cli


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cut of the failover image on the default kernel, shared by a module's boots."""
    out = tmp_path_factory.mktemp("mpio-out")
    p = run_cli("cut", "--output-dir", str(out))
    assert p.returncode == 0, p.stderr
    return out


def run_cli(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """rapido-mpio as a user runs it; none of the developer's own settings leak in."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDO_MPIO_")
                and k not in ("KERNEL_SRC", "KBUILD_OUTPUT")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "rapido_mpio", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def qemu_processes_for(path: Path) -> list[str]:
    """QEMU processes whose command line mentions `path` (each run's files live under it)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and b"qemu-system" in cmdline[0] and str(path).encode() in b" ".join(cmdline):
            found.append(pid)
    return found


def interrupt_with_qemus_running(argv: list[str], out: Path, qemus: int,
                                 to_group: bool) -> None:
    """Start `rapido-mpio ARGV` in a session of its own, wait until `qemus` QEMUs of `out`
    run, then SIGINT the parent alone (as a CI runner's cancel sends it) or, `to_group`, its
    whole process group (as a terminal's Ctrl-C does). It must stop every QEMU and say it was
    interrupted, in one sentence, exit 255."""
    proc = subprocess.Popen([sys.executable, "-m", "rapido_mpio", *argv], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while len(qemu_processes_for(out)) < qemus and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(qemu_processes_for(out)) == qemus, f"{qemus} QEMUs never ran at once"
    if to_group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 255
    assert "interrupted" in err and "Traceback" not in err
    assert qemu_processes_for(out) == []


def last_result(output_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((output_dir / "last" / "result.json").read_text())
    return result


TEST_SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def cut_dir_with_test_scenarios(root: Path) -> Path:
    """A cut/ whose scenarios are the shipped ones plus the test-only ones in tests/scenarios
    (links, so the cached base layer is the same as for the real cut/)."""
    cut = root / "cut"
    (cut / "scenarios").mkdir(parents=True)
    for item in (REPO_ROOT / "cut").iterdir():
        if item.name != "scenarios":
            (cut / item.name).symlink_to(item)
    for f in [*(REPO_ROOT / "cut" / "scenarios").iterdir(), *TEST_SCENARIOS.iterdir()]:
        (cut / "scenarios" / f.name).symlink_to(f)
    return cut
