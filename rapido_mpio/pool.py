"""Run a matrix's combinations, several VMs at a time, each in a `rapido-mpio boot` of its
own.

A child process per combination, not a thread: each run keeps the tested single-run path
(its own QEMU, sockets, disk files, run directory and `last` link), shares no state with the
others, and cleans up its QEMU on SIGTERM as a lone run does on Ctrl-C. The parent only
starts, watches and stops children, and reads what they leave behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any

from rapido_mpio import lifetime, protocol
from rapido_mpio.config import SETTINGS, Config
from rapido_mpio.errors import ExitCode
from rapido_mpio.results import Combination, CombinationResult

STOP_GRACE = lifetime.STOP_GRACE
POLL = 0.25
# settings a combination sets itself; the rest are the parent's, passed through the env
PER_RUN = {"output_dir", "scenario", "scenario_env", "path_selector", "path_grouping",
           "kernel_src", "kernel_build", "console"}


@dataclasses.dataclass(frozen=True)
class Job:
    combination: Combination
    work_dir: Path  # the child's --output-dir: image link, runs/, last, boot.log
    image_dir: Path  # the cut image of its kernel


@dataclasses.dataclass
class Running:
    job: Job
    proc: subprocess.Popen[bytes]
    began: float

    def step(self) -> str:
        """The step the guest said it is in, from the run's protocol log (written live)."""
        logs = sorted(self.job.work_dir.glob("runs/*/protocol.log"))
        if not logs:
            return "starting"
        with contextlib.suppress(OSError):
            return protocol.step_of(logs[-1].read_text(errors="replace").splitlines()) or "boot"
        return "boot"


def default_vms(cfg: Config, accel: str, host_cpus: int | None = None,
                meminfo: Path = Path("/proc/meminfo")) -> int:
    """As many VMs as the host has CPUs for their vCPU threads, as far as available memory
    holds each guest plus QEMU's share. Under TCG a guest's vCPUs share one host thread
    (qemu.j2: thread=single), so a VM takes one host CPU whatever its guest CPUs: on 2 cores,
    two failover runs at once took 11.9 s, one after the other 28.0 s (2026-12-07). Under
    KVM each vCPU is a thread of its own."""
    cpus = host_cpus if host_cpus is not None else len(os.sched_getaffinity(0))
    per_vm = 1 if accel == "tcg" else cfg.cpus
    try:
        with open(meminfo) as f:
            avail_kib = next(int(ln.split()[1]) for ln in f if ln.startswith("MemAvailable:"))
        by_memory = max(1, avail_kib // 1024 // (cfg.memory + 256))
    except (OSError, StopIteration, ValueError):
        by_memory = 1
    return max(1, min(cpus // per_vm, by_memory))


def child_env(cfg: Config) -> dict[str, str]:
    """The parent's resolved settings for the child, so it runs exactly as configured."""
    env = dict(os.environ)
    for s in SETTINGS:
        value = getattr(cfg, s.name)
        if s.name in PER_RUN or value is None:
            env.pop(s.env_names[0], None)
            continue
        env[s.env_names[0]] = ("true" if value else "false") if s.kind is bool else str(value)
    env.pop("RAPIDO_MPIO_CONFIG", None)  # everything it said is in the env now
    return env


def command(job: Job) -> list[str]:
    c = job.combination
    env = ([f"FAULT={c.fault}"] if c.fault else []) + [f"{k}={v}" for k, v in c.env]
    return [sys.executable, "-m", "rapido_mpio", "boot", "--output-dir", str(job.work_dir),
            "--scenario", c.scenario, "--path-selector", c.selector or "scenario",
            "--path-grouping", c.grouping or "scenario", "--scenario-env", ",".join(env)]


def run(jobs: Iterable[Job], cfg: Config, vms: int, matrix_dir: Path,
        on_start: Callable[[Running], None] = lambda r: None,
        on_tick: Callable[[list[Running]], None] = lambda rs: None,
        ) -> Generator[CombinationResult, None, None]:
    """Yield each combination's result as it finishes. Whatever ends the iteration (done,
    Ctrl-C, an error), every child still running is stopped, and with it its QEMU."""
    pending = list(jobs)
    running: list[Running] = []
    env = child_env(cfg)
    try:
        while pending or running:
            while pending and len(running) < vms:
                job = pending.pop(0)
                job.work_dir.mkdir(parents=True)  # new: the one run in it is the child's
                link = job.work_dir / "image"
                if not link.is_symlink():
                    link.symlink_to(os.path.relpath(job.image_dir, job.work_dir))
                # a child started is a child stopped: no interrupt before it is in `running`;
                # a matrix that dies (even by SIGKILL) sends its children SIGTERM
                with open(job.work_dir / "boot.log", "wb") as log, \
                        lifetime.signals_deferred():
                    proc = lifetime.spawn(command(job), signal.SIGTERM, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env)
                    r = Running(job, proc, time.monotonic())
                    running.append(r)
                on_start(r)
            on_tick(running)
            time.sleep(POLL)
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                yield collect(r.job, r.proc.returncode, time.monotonic() - r.began, matrix_dir)
    finally:
        stop(running)


def stop(running: list[Running]) -> None:
    """SIGTERM: each child unwinds as a Ctrl-C'd run does, ending its QEMU by PID. A child
    too slow at it is killed, and its QEMU with it (the parent-death signal)."""
    for r in running:
        if r.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for r in running:
        try:
            r.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()


def collect(job: Job, code: int, wall: float, matrix_dir: Path) -> CombinationResult:
    """The combination's result from the result.json of the run its child made; from the
    child's exit code and last words when it stopped before a run began (a selector the
    kernel lacks: 125). Never through `last`: a link anyone could have moved."""
    c = job.combination
    runs = [p for p in (job.work_dir / "runs").glob("*") if p.is_dir() and not p.is_symlink()]
    data: dict[str, Any] | None = None
    if len(runs) == 1:  # the work directory was new: its one run is the child's
        with contextlib.suppress(OSError, ValueError):
            data = json.loads((runs[0] / "result.json").read_text())
    if data is None:
        words = _last_words(job.work_dir / "boot.log")
        result = {ExitCode.UNTESTABLE: "UNTESTABLE", ExitCode.FAIL: "FAIL"}.get(
            ExitCode(code) if code in set(ExitCode) else ExitCode.SETUP, "ERROR")
        return CombinationResult(c, result, code if code in set(ExitCode) else 255,
                                 words or f"rapido-mpio boot exited {code} without a run.",
                                 seconds=round(wall, 3))
    return CombinationResult.from_run(c, data, os.path.relpath(runs[0], matrix_dir), wall)


def _last_words(log: Path) -> str:
    """The child's one-sentence error ("rapido-mpio: Scenario x uses ...")."""
    with contextlib.suppress(OSError):
        lines = [ln for ln in log.read_text(errors="replace").splitlines()
                 if ln.startswith("rapido-mpio: ")]
        if lines:
            return lines[-1].removeprefix("rapido-mpio: ")
    return ""
