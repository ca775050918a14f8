"""One boot: start QEMU, follow the guest's protocol channel, act on its events, end QEMU.

Everything QEMU needs that is not an artifact (disk, sockets) lives in a private scratch
directory removed at the end. QEMU is ended by its PID on every way out: verdict, timeout,
error, Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rapido_mpio import qemu
from rapido_mpio.config import Config
from rapido_mpio.console import Channel, ChannelClosed, ChannelTimeout
from rapido_mpio.faults import Action, FaultError, Faults
from rapido_mpio.image import Image, assemble
from rapido_mpio.monitor import Monitor, MonitorError
from rapido_mpio.protocol import Message, ProtocolError
from rapido_mpio.scenario import Scenario
from rapido_mpio.topology import Topology

CONNECT_TIMEOUT = 15.0  # QEMU connects to our sockets right after it starts
SHUTDOWN_GRACE = 15.0  # after the verdict, for the guest's own reboot -f
SCENARIO_LAYER = "scenario.cpio"  # the run's own first layer, kept among its artifacts
DUMP_WAIT = 3.0  # for the guest's task dump to reach the console, after sysrq w


@dataclasses.dataclass(frozen=True)
class Hang:
    """A scenario that stopped making progress: a step past its deadline, or the scenario
    past its timeout."""

    step: str  # "-": outside any step
    deadline: float  # seconds the step declared (0: outside any step)
    seconds: float  # seconds it had run when the host gave up on it
    dump: tuple[str, ...]  # console lines from sysrq w on (empty: the kernel has no sysrq)


@dataclasses.dataclass
class RunRecord:
    """What happened, as raw as possible; verdict.py decides what it means."""

    run_dir: Path
    console_log: Path
    accel: str
    messages: list[Message] = dataclasses.field(default_factory=list)
    blocks: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    actions: list[Action] = dataclasses.field(default_factory=list)  # faults, host and guest
    host_error: str | None = None
    protocol_error: str | None = None  # the guest sent a line outside the protocol
    timed_out: str | None = None  # what ran out of time: boot, step, scenario, shutdown
    hang: Hang | None = None
    qemu_status: int | None = None  # None: killed by us
    qemu_output: str = ""  # QEMU's own stdout/stderr (not the guest's console)
    exited_at: float | None = None

    def first(self, kind: str) -> Message | None:
        return next((m for m in self.messages if m.kind == kind), None)

    def last_step(self) -> Message | None:
        return next((m for m in reversed(self.messages) if m.kind == "STEP"), None)


def boot(image: Image, scenario: Scenario, cfg: Config, run_dir: Path) -> RunRecord:
    accel = qemu.detect_accel(cfg.accel)
    binary = qemu.find_binary(cfg.qemu)
    run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rapido-mpio-")))
        topology = Topology.build(scenario.shape, str(scratch), cfg.disk_size)
        for disk in topology.disks:
            with open(disk, "wb") as f:
                f.truncate(topology.lun_mib << 20)  # sparse: costs nothing until written
        # kept with the run: qemu-cmd.sh rebuilds the initrd from it and the cached layers
        (run_dir / SCENARIO_LAYER).write_bytes(
            assemble(image, scenario, scratch / "initrd"))
        proto_listener = stack.enter_context(_listen(scratch / "proto.sock"))
        qmp_listener = stack.enter_context(_listen(scratch / "qmp.sock"))
        machine = _machine(image, topology, cfg, accel, binary, str(scratch), run_dir)
        argv = qemu.render(cfg.templates_dir, machine)
        _save_rerun_script(machine, image, cfg, run_dir)
        record = RunRecord(run_dir, run_dir / "console.log", accel.reason)
        qemu_out = stack.enter_context(open(run_dir / "qemu.log", "w+"))
        protocol_log = stack.enter_context(open(run_dir / "protocol.log", "w"))
        if cfg.console:  # entered first, left last: it shows QEMU's final lines too
            stack.enter_context(_stream(run_dir / "console.log", sys.stderr))
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qemu_out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(_reap, proc, record, started)
        proto = stack.enter_context(_accept(proto_listener, proc))
        qmp = stack.enter_context(_accept(qmp_listener, proc))
        if proto is not None and qmp is not None:  # else QEMU exited: _reap records why
            _converse(proc, proto, qmp, protocol_log, topology, cfg, record, started)
    return record


def _machine(image: Image, topology: Topology, cfg: Config, accel: qemu.Accel, binary: str,
             scratch: str, run_dir: Path) -> qemu.Machine:
    return qemu.Machine(
        binary=binary, accel=accel.name, cpu=accel.cpu, memory=cfg.memory, cpus=cfg.cpus,
        bios=str(qemu.QBOOT) if qemu.QBOOT.exists() else None,
        kernel=str(image.kernel_image), initrd=f"{scratch}/initrd",
        cmdline=" ".join(filter(None, [qemu.BASE_CMDLINE, accel.cmdline, cfg.kernel_cmdline])),
        console_log=str(run_dir / "console.log"),
        proto_socket=f"{scratch}/proto.sock", qmp_socket=f"{scratch}/qmp.sock",
        topology=topology,
    )


def _save_rerun_script(machine: qemu.Machine, image: Image, cfg: Config,
                       run_dir: Path) -> None:
    """The same machine for a human: its own scratch dir, and sockets that wait for socat."""
    by_hand = dataclasses.replace(
        machine, socket_mode=",server=on,wait=off", initrd=f"{qemu.SCRATCH}/initrd",
        console_log=f"{qemu.SCRATCH}/console.log",
        topology=Topology.build(machine.topology.shape, qemu.SCRATCH,
                                machine.topology.lun_mib),
        proto_socket=f"{qemu.SCRATCH}/proto.sock", qmp_socket=f"{qemu.SCRATCH}/qmp.sock")
    parts = [str(run_dir.resolve() / SCENARIO_LAYER), *map(str, image.layers)]
    script = qemu.as_script(qemu.render(cfg.templates_dir, by_hand), by_hand.topology, parts)
    (run_dir / "qemu-cmd.sh").write_text(script)


def _converse(proc: subprocess.Popen[bytes], proto: socket.socket, qmp: socket.socket,
              protocol_log: TextIO, topology: Topology, cfg: Config, record: RunRecord,
              started: float) -> None:
    try:
        monitor = Monitor(qmp)
    except MonitorError as e:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        if proc.poll() is None:  # QEMU runs but its monitor does not answer
            record.host_error = f"QMP monitor unusable: {e}"
        return
    faults = Faults(monitor, topology, started)
    try:
        _follow(Channel(proto, started, protocol_log), monitor, faults, cfg, record, started)
    finally:
        record.actions = faults.actions
        monitor.close()


def _follow(channel: Channel, monitor: Monitor, faults: Faults, cfg: Config,
            record: RunRecord, started: float) -> None:
    stage, deadline = "boot", started + cfg.boot_timeout
    step: tuple[str, float, float] | None = None  # name, declared seconds, began (monotonic)
    while True:
        step_deadline = step[2] + step[1] if step else deadline
        due = faults.due()
        if due is not None and time.monotonic() >= due:
            try:  # a schedule the guest asked for (flap_path), before any more messages
                faults.run_due()
            except (FaultError, MonitorError) as e:
                record.host_error = f"scheduled fault failed: {e}"
                return
            continue
        try:
            msg = channel.receive(min(deadline, step_deadline, due or deadline))
        except ChannelClosed:
            return
        except ProtocolError as e:  # nothing past it can be trusted: the run ends here
            record.protocol_error = str(e)
            return
        except ChannelTimeout:
            if due is not None and time.monotonic() >= due:
                continue
            record.timed_out = "step" if step is not None and step_deadline < deadline \
                else stage
            if stage != "shutdown" and record.first("START") is not None:
                # init or the scenario stopped making progress: where is it stuck?
                record.hang = _task_dump(monitor, record, step or ("-", 0.0, started))
            return
        record.messages.append(msg)
        if msg.kind == "SCENARIO":  # init's steps are over
            stage, deadline = "scenario", time.monotonic() + cfg.scenario_timeout
            step = None
        elif msg.kind == "STEP" and msg.seconds is not None:
            step = (msg.name, msg.seconds, time.monotonic())
        elif msg.kind == "EVENT" and msg.fault is None:  # END
            channel.acknowledge("END")  # everything before it has arrived: it may reboot
        elif msg.kind == "EVENT" and msg.fault is not None:
            try:
                faults.perform(msg.fault)
            except FaultError as e:  # the scenario asked for something impossible
                record.host_error = f"the scenario asked for {msg.text!r}: {e}"
                return
            except MonitorError as e:
                record.host_error = f"fault {msg.text!r} failed in QEMU: {e}"
                return
            channel.acknowledge(msg.text)
        elif msg.kind == "ACTION":  # a fault the guest made itself (offline_path, ...)
            faults.actions.append(Action(msg.at, msg.name, msg.args, 0.0, "in the guest"))
        elif msg.kind == "BEGIN":
            record.blocks[msg.name] = []
        elif msg.kind == "LINE":
            record.blocks.setdefault(msg.name, []).extend(msg.args)
        elif msg.kind == "VERDICT":
            step = None
            stage, deadline = "shutdown", time.monotonic() + SHUTDOWN_GRACE


def _task_dump(monitor: Monitor, record: RunRecord, step: tuple[str, float, float]) -> Hang:
    """Press sysrq w (blocked tasks) and l (each CPU's backtrace) on the guest's keyboard
    and collect what the kernel prints, before QEMU is ended; a kernel without sysrq or a
    keyboard prints nothing."""
    name, declared, began = step
    seconds = time.monotonic() - began
    offset = _size(record.console_log)
    try:
        monitor.send_keys("alt", "sysrq", "w")  # tasks blocked in the kernel
        monitor.send_keys("alt", "sysrq", "l")  # what each CPU is running
    except MonitorError:
        return Hang(name, declared, seconds, ())
    last_size, quiet_since = -1, time.monotonic()
    end = time.monotonic() + DUMP_WAIT
    while time.monotonic() < end:  # until the console has been quiet for 0.5 s
        size = _size(record.console_log)
        if size != last_size:
            last_size, quiet_since = size, time.monotonic()
        elif time.monotonic() - quiet_since > 0.5:
            break
        time.sleep(0.1)
    with open(record.console_log, errors="replace") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    start = next((i for i, ln in enumerate(lines) if "sysrq: Show Blocked State" in ln), None)
    return Hang(name, declared, seconds, tuple(lines[start:]) if start is not None else ())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextlib.contextmanager
def _stream(log: Path, out: TextIO) -> Iterator[None]:
    """Follow the console file QEMU writes, for a human watching the run live."""
    done = threading.Event()

    def follow() -> None:
        while not log.exists() and not done.is_set():
            time.sleep(0.05)
        with contextlib.suppress(OSError), open(log, errors="replace") as f:
            while True:
                chunk = f.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                elif done.is_set():
                    return
                else:
                    time.sleep(0.05)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2)


@contextlib.contextmanager
def _listen(path: Path) -> Iterator[socket.socket]:
    """We listen and QEMU connects: nothing the guest says can be lost before we attach."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(1)
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def _accept(listener: socket.socket,
            proc: subprocess.Popen[bytes]) -> Iterator[socket.socket | None]:
    """QEMU's connection, closed on exit; None if QEMU exits or never connects."""
    conn = None
    deadline = time.monotonic() + CONNECT_TIMEOUT
    listener.settimeout(0.05)
    while conn is None and time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(TimeoutError):
            conn, _ = listener.accept()
            conn.settimeout(None)
    try:
        yield conn
    finally:
        if conn is not None:
            conn.close()


def _reap(proc: subprocess.Popen[bytes], record: RunRecord, started: float) -> None:
    """End QEMU by its PID whatever happened: SIGTERM, then SIGKILL."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=SHUTDOWN_GRACE if record.first("VERDICT") else 0.5)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        record.qemu_status = None
    else:
        record.qemu_status = proc.returncode
    record.exited_at = time.monotonic() - started
    log = record.run_dir / "qemu.log"
    with contextlib.suppress(OSError):
        record.qemu_output = log.read_text(errors="replace").strip()
