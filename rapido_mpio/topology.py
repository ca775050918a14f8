"""The storage a scenario boots with: LUNs, each reached through several SCSI paths.

A path is one `scsi-hd` on the virtio-scsi controller with its own drive over the LUN's
backing file. A -drive, not a -blockdev: only a named drive can be cut from under its
device with drive_del (the cable pull that leaves the disk in place), and -blockdev nodes
have none. As on a SAN, a path is a target port and a LUN a logical unit: path P
of LUN L sits at target P, LUN L, so the guest finds it at H:0:P:L. Equal serials on every
path of a LUN make one WWID, so multipathd builds one map per LUN.

The topology also tracks which generation of each path is plugged in: a path that is
removed and added back is a new device with a new drive id (QEMU deletes a -drive with its
device), at the same address.
"""

from __future__ import annotations

import dataclasses

MAX_LUNS = 16
MAX_PATHS = 8
MAX_LUN_MIB = 1 << 20  # 1 TiB, sparse: ext4 takes 16 TiB files, and a test writes little


def serial(lun: int) -> str:
    return f"MPIO{lun}"


def wwid(lun: int) -> str:
    """What udev's scsi_id makes of QEMU's vendor, model and serial: the map's WWID."""
    return f"0QEMU_QEMU_HARDDISK_{serial(lun)}"


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a scenario declares: how many LUNs, paths per LUN, and the LUNs' size."""

    luns: int = 1
    paths: int = 2
    lun_mib: int | None = None  # None: the run's disk_size setting

    def problems(self) -> list[str]:
        out = []
        if not 1 <= self.luns <= MAX_LUNS:
            out.append(f"luns must be 1 to {MAX_LUNS}, not {self.luns}")
        if not 1 <= self.paths <= MAX_PATHS:
            out.append(f"paths must be 1 to {MAX_PATHS}, not {self.paths}")
        if self.lun_mib is not None and not 1 <= self.lun_mib <= MAX_LUN_MIB:
            out.append(f"lun_mib must be 1 to {MAX_LUN_MIB}, not {self.lun_mib}")
        return out

    @property
    def slots(self) -> tuple[PathSlot, ...]:
        return tuple(PathSlot(lun, path) for lun in range(self.luns) for path in range(self.paths))

    def guest_table(self) -> str:
        """/etc/mpio/topology: one line per path, `LUN PATH WWID TARGET:LUN`; the guest
        finds the path's device at H:0:TARGET:LUN (H: the virtio-scsi host)."""
        return "".join(f"{s.lun} {s.path} {wwid(s.lun)} {s.path}:{s.lun}\n" for s in self.slots)


@dataclasses.dataclass(frozen=True)
class PathSlot:
    """One path as plugged in: generation 0 is the one on the QEMU command line."""

    lun: int
    path: int
    generation: int = 0

    @property
    def drive(self) -> str:
        """The -drive id: the name drive_del takes."""
        return f"l{self.lun}p{self.path}" + (f"g{self.generation}" if self.generation else "")

    @property
    def device(self) -> str:
        return f"{self.drive}dev"


@dataclasses.dataclass(frozen=True)
class Topology:
    shape: Shape
    disks: tuple[str, ...]  # backing file of each LUN
    lun_mib: int

    @staticmethod
    def build(shape: Shape, directory: str, default_mib: int) -> Topology:
        return Topology(shape, tuple(f"{directory}/lun{lun}.img" for lun in range(shape.luns)),
                        shape.lun_mib or default_mib)

    @property
    def slots(self) -> tuple[PathSlot, ...]:
        return self.shape.slots

    def contains(self, lun: int, path: int) -> bool:
        return 0 <= lun < self.shape.luns and 0 <= path < self.shape.paths

    def device_args(self, slot: PathSlot) -> dict[str, object]:
        """QMP device_add arguments for a path (the command line's -device, as a dict)."""
        return {"driver": "scsi-hd", "drive": slot.drive, "id": slot.device,
                "serial": serial(slot.lun), "bus": "scsi.0", "channel": 0,
                "scsi-id": slot.path, "lun": slot.lun}

    def device_spec(self, slot: PathSlot) -> str:
        """The same as a -device option value."""
        args = self.device_args(slot)
        return ",".join([str(args.pop("driver"))] + [f"{k}={v}" for k, v in args.items()])

    def drive_spec(self, slot: PathSlot) -> str:
        """The -drive option value (and HMP drive_add's) of a path."""
        disk = self.disks[slot.lun].replace(",", ",,")
        return f"if=none,id={slot.drive},file={disk},format=raw,file.locking=off"
