"""Path faults the host injects when the guest asks (`mpio_fault NAME LUN PATH ...`).

Each fault is acknowledged only once it has really happened: for a removal, once QEMU has
sent DEVICE_DELETED. Every action is recorded with its time, for result.json. Schedules
(flap_path) are acknowledged at once and run from the host's event loop, so the guest's
I/O goes on meanwhile.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from rapido_mpio.monitor import Monitor, MonitorError
from rapido_mpio.protocol import Fault
from rapido_mpio.topology import PathSlot, Topology

REMOVE_TIMEOUT = 10.0  # for DEVICE_DELETED after device_del


class FaultError(Exception):
    """The guest asked for a path the topology does not have, or one in the wrong state."""


@dataclasses.dataclass(frozen=True)
class Action:
    at: float  # seconds since QEMU started
    name: str
    args: tuple[str, ...]
    seconds: float  # how long the action took, until it had really happened
    detail: str  # the monitor commands, for a human

    def to_json(self) -> dict[str, object]:
        return {"at": round(self.at, 3), "action": self.name, "args": list(self.args),
                "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclasses.dataclass
class _Path:
    slot: PathSlot
    state: str = "ok"  # ok, failed (drive cut, device present), removed


class Faults:
    """The host's side of the paths: what is plugged in, and the actions on it."""

    def __init__(self, monitor: Monitor, topology: Topology, started: float) -> None:
        self.monitor = monitor
        self.topology = topology
        self.started = started
        self.actions: list[Action] = []
        self.paths = {(s.lun, s.path): _Path(s) for s in topology.slots}
        self.schedule: list[tuple[float, Fault]] = []  # (when, what)

    def perform(self, fault: Fault) -> None:
        """Run one fault (decoded, its arguments in range: protocol.py) to its end and record
        it; FaultError for a path the topology lacks or cannot do it, MonitorError when QEMU
        refuses."""
        began = time.monotonic()
        if fault.name == "flap_path":
            detail = self.flap_path(fault.lun, fault.path, fault.period, fault.count)
        else:
            method: Callable[[int, int], str] = getattr(self, fault.name)
            detail = method(fault.lun, fault.path)
        self.actions.append(Action(began - self.started, fault.name, fault.args,
                                   time.monotonic() - began, detail))

    def due(self) -> float | None:
        """When the next scheduled action is due (monotonic), if any."""
        return min((when for when, _ in self.schedule), default=None)

    def run_due(self) -> None:
        now = time.monotonic()
        for item in sorted(self.schedule, key=lambda item: item[0]):
            if item[0] <= now:
                self.schedule.remove(item)
                self.perform(item[1])

    def _path(self, lun: int, path: int) -> _Path:
        key = (lun, path)
        if key not in self.paths:
            raise FaultError(f"no path {path} of LUN {lun} in a topology of "
                             f"{self.topology.shape.luns} LUNs x {self.topology.shape.paths}")
        return self.paths[key]

    def fail_path(self, lun: int, path: int) -> str:
        """The cable pull: the drive goes, the disk stays, every command to it fails."""
        p = self._path(lun, path)
        if p.state != "ok":
            raise FaultError(f"path {lun}:{path} is {p.state}, it cannot fail")
        self.monitor.hmp(f"drive_del {p.slot.drive}")
        p.state = "failed"
        return f"drive_del {p.slot.drive}"

    def remove_path(self, lun: int, path: int) -> str:
        """device_del: the SCSI device leaves the guest; done when QEMU says DEVICE_DELETED."""
        p = self._path(lun, path)
        if p.state == "removed":
            raise FaultError(f"path {lun}:{path} is already removed")
        self.monitor.execute("device_del", {"id": p.slot.device})
        waited = self.monitor.wait_event("DEVICE_DELETED", {"device": p.slot.device},
                                         REMOVE_TIMEOUT)
        p.state = "removed"
        return f"device_del {p.slot.device}, DEVICE_DELETED after {waited:.2f}s"

    def restore_path(self, lun: int, path: int) -> str:
        """The path comes back as a new scsi-hd at the same address on the same LUN file; a
        failed one is removed first (its drive is gone for good)."""
        p = self._path(lun, path)
        if p.state == "ok":
            raise FaultError(f"path {lun}:{path} is up, there is nothing to restore")
        done = []
        if p.state == "failed":
            done.append(self.remove_path(lun, path))
        slot = dataclasses.replace(p.slot, generation=p.slot.generation + 1)
        self.monitor.hmp(f"drive_add 0 {self.topology.drive_spec(slot)}")
        self.monitor.execute("device_add", self.topology.device_args(slot))
        p.slot, p.state = slot, "ok"
        done.append(f"drive_add {slot.drive}, device_add {slot.device}")
        return "; ".join(done)

    def flap_path(self, lun: int, path: int, period: float, count: int) -> str:
        """COUNT times: fail the path, restore it PERIOD/2 seconds later, PERIOD apart; runs
        while the guest goes on."""
        self._path(lun, path)
        half = period / 2
        now = time.monotonic()
        for i in range(count):
            self.schedule.append((now + 2 * i * half, Fault("fail_path", lun, path)))
            self.schedule.append((now + (2 * i + 1) * half, Fault("restore_path", lun, path)))
        return f"{count} x (fail_path, restore_path {half:g}s later), every {period:g}s"


__all__ = ["Action", "FaultError", "Faults", "MonitorError"]
