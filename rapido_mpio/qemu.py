"""QEMU: which accelerator, and the command line rendered from templates/qemu.j2."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
from pathlib import Path

from rapido_mpio.errors import SetupError
from rapido_mpio.topology import Topology

QBOOT = Path("/usr/share/qemu/qboot.rom")  # much faster than SeaBIOS at reaching the kernel
BASE_CMDLINE = "console=ttyS0,115200 panic=-1 printk.devkmsg=on"


# Under TCG the local APIC timer calibration alone costs ~0.2 s of boot; the kernel then
# ticks from the broadcast timer instead, which nothing in a multipath test can tell apart.
TCG_CMDLINE = "noapictimer"


@dataclasses.dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    cpu: str | None
    reason: str
    cmdline: str = ""  # kernel arguments this accelerator wants


def detect_accel(requested: str, cpuinfo: Path = Path("/proc/cpuinfo"),
                 kvm_dev: Path = Path("/dev/kvm")) -> Accel:
    """KVM only where /dev/kvm opens and the CPU has vmx/svm (a software KVM has neither)."""
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    hw = bool(flags & {"vmx", "svm"})
    usable = kvm_dev.exists() and os.access(kvm_dev, os.R_OK | os.W_OK)
    if requested == "tcg":
        return Accel("tcg", None, "TCG (asked for)", TCG_CMDLINE)
    if usable and hw:
        return Accel("kvm", "host", "KVM")
    why = ("/dev/kvm is missing or not accessible" if not usable
           else "the CPU shows no vmx/svm (software-only KVM)")
    if requested == "kvm":
        raise SetupError(f"KVM was asked for but {why}.",
                         hint="Use --accel auto or --accel tcg.")
    return Accel("tcg", None, f"TCG, because {why}", TCG_CMDLINE)


@dataclasses.dataclass(frozen=True)
class Machine:
    """Everything the template needs, nothing it has to decide."""

    binary: str
    accel: str
    cpu: str | None
    memory: int
    cpus: int
    bios: str | None
    kernel: str
    initrd: str
    cmdline: str
    console_log: str
    proto_socket: str
    qmp_socket: str
    topology: Topology
    socket_mode: str = ""  # "": QEMU connects to the host; ",server=on,wait=off" by hand


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SetupError(f"QEMU ({name}) is not installed or not on PATH.",
                         hint="Install it: apt-get install qemu-system-x86 (or set qemu:).")
    return found


def optarg(value: object) -> str:
    """QEMU option values separate on commas; a literal comma is written twice."""
    return str(value).replace(",", ",,")


def render(templates_dir: Path, machine: Machine) -> list[str]:
    import jinja2  # only boot needs it; keeps `cut` and `--help` quick

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        autoescape=False, keep_trailing_newline=False,
    )
    env.filters["optarg"] = optarg
    try:
        text = env.get_template("qemu.j2").render(m=machine)
    except jinja2.TemplateError as e:
        raise SetupError(f"Template {templates_dir / 'qemu.j2'} is broken: {e}.") from None
    return [line for line in (ln.strip() for ln in text.splitlines()) if line]


SCRATCH = "@SCRATCH@"  # stands for the per-run directory in the script for humans


def as_script(argv: list[str], topology: Topology, initrd_parts: list[str]) -> str:
    """The command as a shell script a user can rerun by hand, in a fresh scratch dir.

    `argv` was rendered with SCRATCH for the scratch directory; the script makes one, and
    the initrd in it from the run's scenario layer and the cached layers.
    """
    def quote(arg: str) -> str:
        if SCRATCH not in arg:
            return shlex.quote(arg)
        # single-quote each literal part and put "$RUN" between them
        parts = ("'" + p.replace("'", "'\\''") + "'" if p else "" for p in arg.split(SCRATCH))
        return '"$RUN"'.join(parts)

    lines = ["#!/bin/sh", "# Rendered by rapido-mpio from templates/qemu.j2: the same machine,",
             "# with new empty LUNs. The console goes to $RUN/console.log; talk to the guest",
             "# and the monitor with: socat - UNIX-CONNECT:$RUN/proto.sock (or qmp.sock).",
             "set -e", "RUN=$(mktemp -d)",
             *(f'truncate -s {topology.lun_mib}M ' + quote(disk) for disk in topology.disks),
             "cat " + " ".join(shlex.quote(p) for p in initrd_parts) + ' > "$RUN/initrd"',
             'echo "scratch directory: $RUN"',
             "exec " + " \\\n  ".join(quote(a) for a in argv), ""]
    return "\n".join(lines)
