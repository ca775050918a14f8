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

A LUN can also fail by itself, the same on every path (a thin pool out of space, a bad
sector): QEMU's blkdebug driver sits under each of its paths' drives and fails the
requests that cover a declared sector with a declared errno, which the guest sees as the
SCSI status and sense QEMU makes of it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re

MAX_LUNS = 16
MAX_PATHS = 8
MAX_LUN_MIB = 1 << 20  # 1 TiB, sparse: ext4 takes 16 TiB files, and a test writes little


def serial(lun: int) -> str:
    return f"MPIO{lun}"


def wwid(lun: int) -> str:
    """What udev's scsi_id makes of QEMU's vendor, model and serial: the map's WWID."""
    return f"0QEMU_QEMU_HARDDISK_{serial(lun)}"


SECTOR = 512  # blkdebug's sector, whatever the disk's block size
MAX_LUN_ERRORS = 8  # rules per LUN
OPERATIONS = {"read": "read_aio", "write": "write_aio"}  # -> the raw driver's blkdebug event
_DRIVE = re.compile(r"^l(\d+)p\d+(?:g\d+)?$")  # PathSlot.drive


@dataclasses.dataclass(frozen=True)
class LunError:
    """A LUN that fails an operation by itself: every request of that operation covering
    `sector` fails with `errno` (a name: ENOSPC), on every path; with `once`, only the first
    such request on each path."""

    lun: int
    operation: str  # read or write
    errno: str
    sector: int
    once: bool = False

    @property
    def number(self) -> int:
        return int(getattr(errno, self.errno))

    @property
    def reason(self) -> str:
        """How QEMU's BLOCK_IO_ERROR words it (strerror)."""
        return os.strerror(self.number)

    def problems(self, shape: Shape, lun_mib: int | None = None) -> list[str]:
        out = []
        if not 0 <= self.lun < shape.luns:
            out.append(f"LUN {self.lun} is not one of the {shape.luns} LUNs")
        if self.operation not in OPERATIONS:
            out.append(f"operation {self.operation!r} is not one of " + ", ".join(OPERATIONS))
        if not (self.errno.startswith("E") and isinstance(getattr(errno, self.errno, None), int)):
            out.append(f"{self.errno!r} is not an errno name (ENOSPC, ENODATA, EIO, ...)")
        if self.sector < 0 or (lun_mib is not None and self.sector >= (lun_mib << 20) // SECTOR):
            out.append(f"sector {self.sector} is outside the LUN")
        return out

    def rule(self, index: int) -> str:
        """The -drive options of one blkdebug inject-error rule, below the raw format."""
        key = f"file.inject-error.{index}"
        return (f"{key}.event={OPERATIONS[self.operation]},{key}.iotype={self.operation},"
                f"{key}.errno={self.number},{key}.sector={self.sector},"
                f"{key}.once={'on' if self.once else 'off'}")


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


def guest_errors(errors: tuple[LunError, ...]) -> str:
    """/etc/mpio/lun-errors: one line per declared LUN error, `LUN OPERATION ERRNO SECTOR
    once|always`, so the steps aim at the sector the host fails."""
    return "".join(f"{e.lun} {e.operation} {e.errno} {e.sector} "
                   f"{'once' if e.once else 'always'}\n" for e in errors)


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
    errors: tuple[LunError, ...] = ()  # the LUNs' own failures

    @staticmethod
    def build(shape: Shape, directory: str, default_mib: int,
              errors: tuple[LunError, ...] = ()) -> Topology:
        return Topology(shape, tuple(f"{directory}/lun{lun}.img" for lun in range(shape.luns)),
                        shape.lun_mib or default_mib, errors)

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
        rules = [e.rule(i) for i, e in enumerate(e for e in self.errors if e.lun == slot.lun)]
        if not rules:
            return f"if=none,id={slot.drive},file={disk},format=raw,file.locking=off"
        # report, not QEMU's default werror=enospc: that pauses the guest on ENOSPC
        return ",".join([f"if=none,id={slot.drive},format=raw,werror=report,rerror=report",
                         "file.driver=blkdebug,file.image.driver=file",
                         f"file.image.filename={disk},file.image.locking=off", *rules])

    def declared(self, drive: str, reason: str) -> bool:
        """Whether an I/O error QEMU reported on `drive` (BLOCK_IO_ERROR: its id and the
        strerror of its errno) is one its LUN declares, not the host's storage failing."""
        m = _DRIVE.match(drive)
        return m is not None and any(e.lun == int(m.group(1)) and e.reason == reason
                                     for e in self.errors)
