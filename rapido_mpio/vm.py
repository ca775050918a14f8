"""One boot: start QEMU, follow the guest's protocol channel, act on its events, end QEMU.

Everything QEMU needs that is not an artifact (LUN files, initrd) lives in a private scratch
directory removed at the end; its sockets are socket pairs, with no path. QEMU is ended by
its PID on every way out: verdict, timeout, error, Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TextIO

from rapido_mpio import hostfs, lifetime, qemu
from rapido_mpio.config import Config
from rapido_mpio.console import Channel, ChannelClosed, ChannelTimeout
from rapido_mpio.errors import Interrupted
from rapido_mpio.faults import Action, FaultError, Faults
from rapido_mpio.image import Image, assemble
from rapido_mpio.monitor import BlockIOError, Monitor, MonitorError
from rapido_mpio.protocol import Message, ProtocolError
from rapido_mpio.scenario import Scenario
from rapido_mpio.topology import Topology

SHUTDOWN_GRACE = 15.0  # after the verdict, for the guest's own reboot -f
HOST_POLL = 1.0  # seconds between looks at what QEMU reports itself, while the guest is quiet
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
    host_fs: str | None = None  # the host's storage failed the run: no verdict, one sentence
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
        scratch = stack.enter_context(lifetime.scratch_dir())  # removes dead runs' too
        topology = Topology.build(scenario.shape, str(scratch), cfg.disk_size,
                                  scenario.lun_errors)
        _check_room(image, topology)
        for disk in topology.disks:
            with open(disk, "wb") as f:
                f.truncate(topology.lun_mib << 20)  # sparse: costs nothing until written
        # kept with the run: qemu-cmd.sh rebuilds the initrd from it and the cached layers
        (run_dir / SCENARIO_LAYER).write_bytes(
            assemble(image, scenario, scratch / "initrd"))
        # QEMU gets its end of each socket already open: no socket path, so no limit on
        # TMPDIR's length (108 bytes for AF_UNIX), and nothing to wait for it to connect to
        proto, proto_qemu = _socket_pair(stack)
        qmp, qmp_qemu = _socket_pair(stack)
        machine = _machine(image, topology, cfg, accel, binary, str(scratch), run_dir,
                           proto_qemu.fileno(), qmp_qemu.fileno())
        argv = qemu.render(cfg.templates_dir, machine)
        _save_rerun_script(machine, image, cfg, run_dir)
        record = RunRecord(run_dir, run_dir / "console.log", accel.reason)
        qemu_out = stack.enter_context(open(run_dir / "qemu.log", "w+"))
        protocol_log = stack.enter_context(open(run_dir / "protocol.log", "w"))
        if cfg.console:  # entered first, left last: it shows QEMU's final lines too
            stack.enter_context(_stream(run_dir / "console.log", sys.stderr))
        started = time.monotonic()
        with lifetime.signals_deferred():  # no interrupt between QEMU's start and its end
            proc = lifetime.spawn(argv, signal.SIGKILL, stdin=subprocess.DEVNULL,
                                  stdout=qemu_out, stderr=subprocess.STDOUT,
                                  start_new_session=True,  # Ctrl-C is ours, not QEMU's
                                  pass_fds=(proto_qemu.fileno(), qmp_qemu.fileno()))
            stack.push(_reaper(proc, record, started))
        proto_qemu.close()  # QEMU holds them now: when it exits, ours read end-of-file
        qmp_qemu.close()
        with proto, qmp:  # hung up before QEMU is reaped: it writes to no one meanwhile
            _converse(proc, proto, qmp, protocol_log, topology, cfg, record, started)
    return record


def _machine(image: Image, topology: Topology, cfg: Config, accel: qemu.Accel, binary: str,
             scratch: str, run_dir: Path, proto_fd: int, qmp_fd: int) -> qemu.Machine:
    return qemu.Machine(
        binary=binary, accel=accel.name, cpu=accel.cpu, memory=cfg.memory, cpus=cfg.cpus,
        bios=str(qemu.QBOOT) if qemu.QBOOT.exists() else None,
        kernel=str(image.kernel_image), initrd=f"{scratch}/initrd",
        cmdline=" ".join(filter(None, [qemu.BASE_CMDLINE, accel.cmdline, cfg.kernel_cmdline])),
        console_log=str(run_dir / "console.log"), proto_socket=proto_fd, qmp_socket=qmp_fd,
        topology=topology,
    )


def _socket_pair(stack: contextlib.ExitStack) -> tuple[socket.socket, socket.socket]:
    """Our end and QEMU's end of a connected stream socket, both closed with the stack."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stack.callback(ours.close)
    stack.callback(theirs.close)
    return ours, theirs


def _check_room(image: Image, topology: Topology) -> None:
    """The LUN files are sparse and cost what the guest writes. The scenarios write to one
    LUN, the one with XFS (mkfs.xfs zeroes its 64 MiB log, then some MiB of data: 75 MiB
    for failover), and can never write more than its size: so a run needs the initrd plus
    one LUN in full, and then cannot fill the file system by its own writes. A file system
    that others fill meanwhile is caught when QEMU reports the write that failed."""
    initrd = sum(layer.stat().st_size for layer in image.layers if layer.is_file())
    lun = topology.lun_mib << 20
    size = hostfs.human_size
    hostfs.check_room(hostfs.Place.scratch(), initrd + lun,
                      f"the initrd, {size(initrd)}, and the {size(lun)} of a LUN the guest "
                      "may write")


def _save_rerun_script(machine: qemu.Machine, image: Image, cfg: Config,
                       run_dir: Path) -> None:
    """The same machine for a human: its own scratch dir, and sockets that wait for socat."""
    by_hand = dataclasses.replace(
        machine, initrd=f"{qemu.SCRATCH}/initrd",
        console_log=f"{qemu.SCRATCH}/console.log",
        topology=Topology.build(machine.topology.shape, qemu.SCRATCH,
                                machine.topology.lun_mib, machine.topology.errors),
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
        # an error QEMU reported to the guest (not one that paused it) may have ended the
        # run with a verdict before the host looked: the verdict must not stand
        record.host_fs = record.host_fs or _host_failure(monitor, topology)
    finally:
        record.actions = faults.actions
        monitor.close()


def _host_failure(monitor: Monitor, topology: Topology) -> str | None:
    """Why the host failed the guest's storage (a LUN's backing file could not be read or
    written), from what QEMU reported since the last look; None if it did not. The errors
    a LUN declares (lun_errors: blkdebug fails them on purpose) are the scenario's own."""
    status, events = monitor.poll()
    errors = [e for e in map(BlockIOError.from_event, events) if e is not None and e.host_side
              and not topology.declared(e.device, e.reason)]
    if not errors and status != "io-error":
        return None
    how = "paused the guest" if status == "io-error" else "failed the guest's I/O"
    failed = (f"{'reading' if errors[0].operation == 'read' else 'writing'} a LUN's backing "
              f"file failed ({errors[0].reason})" if errors else "a LUN's backing file failed")
    place = hostfs.Place.scratch()
    return (f"QEMU {how}: {failed}; {hostfs.Room.of(place.path)} holds {place.what}. "
            f"{place.fix}")


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
            msg = channel.receive(min(deadline, step_deadline, due or deadline,
                                      time.monotonic() + HOST_POLL))
        except ChannelClosed:
            return
        except ProtocolError as e:  # nothing past it can be trusted: the run ends here
            record.protocol_error = str(e)
            return
        except ChannelTimeout:
            if due is not None and time.monotonic() >= due:
                continue
            if time.monotonic() < min(deadline, step_deadline):
                # only quiet for a while: did the host's storage stop it (QEMU reports so)?
                record.host_fs = _host_failure(monitor, faults.topology)
                if record.host_fs:
                    return
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


def _reaper(proc: subprocess.Popen[bytes], record: RunRecord,
            started: float) -> Callable[[type[BaseException] | None, BaseException | None,
                                         TracebackType | None], bool]:
    """boot()'s last exit: QEMU ended on every way out. An interrupt comes out as
    Interrupted once QEMU is gone, so the CLI can say that it was stopped."""

    def reap(exc_type: type[BaseException] | None, exc: BaseException | None,
             tb: TracebackType | None) -> bool:
        interrupted = isinstance(exc, KeyboardInterrupt)
        try:
            _reap(proc, record, started)
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            if proc.poll() is None:
                raise KeyboardInterrupt
            raise Interrupted("QEMU was stopped")
        return False

    return reap


def _reap(proc: subprocess.Popen[bytes], record: RunRecord, started: float) -> None:
    """End QEMU by its PID whatever happened: the guest's grace to reboot, then SIGTERM,
    then SIGKILL. An interrupt may cut the grace short, never the ending itself."""
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=SHUTDOWN_GRACE if record.first("VERDICT") else 0.5)
    finally:
        with lifetime.signals_deferred():
            killed = _stop(proc)
        record.qemu_status = None if killed else proc.returncode
        record.exited_at = time.monotonic() - started
        log = record.run_dir / "qemu.log"
        with contextlib.suppress(OSError):
            record.qemu_output = log.read_text(errors="replace").strip()


def _stop(proc: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, and SIGKILL if QEMU is still there 3 s later; False if it had exited."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return True
