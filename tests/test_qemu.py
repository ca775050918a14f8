"""The QEMU command line from the template, and the choice of accelerator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rapido_mpio import qemu
from rapido_mpio.config import REPO_ROOT
from rapido_mpio.errors import SetupError
from rapido_mpio.topology import LunError, PathSlot, Shape, Topology


def _machine(**over: object) -> qemu.Machine:
    values: dict[str, object] = dict(
        binary="/usr/bin/qemu-system-x86_64", accel="tcg", cpu=None, memory=1024, cpus=2,
        bios=None, kernel="/k/bzImage", initrd="/o/initrd", cmdline="console=ttyS0 quiet",
        console_log="/runs/a,b/console.log", proto_socket="/t/proto.sock",
        qmp_socket="/t/qmp.sock", topology=Topology.build(Shape(), "/t/a,b", 320))
    values.update(over)
    return qemu.Machine(**values)  # type: ignore[arg-type]


def test_two_paths_to_one_lun() -> None:
    argv = qemu.render(REPO_ROOT / "templates", _machine())
    devices = [a for a in argv if a.startswith("scsi-hd,")]
    drives = [a for a in argv if a.startswith("if=none,")]
    assert len(devices) == 2 and len(drives) == 2
    assert all("serial=MPIO0" in d for d in devices)
    assert all("file.locking=off" in d and "file=/t/a,,b/lun0.img" in d for d in drives)
    assert "id=l0p0," in drives[0] and "id=l0p1," in drives[1]
    # path P of LUN L is target P, LUN L: the guest finds it at H:0:P:L
    assert "drive=l0p1,id=l0p1dev," in devices[1] and "scsi-id=1,lun=0" in devices[1]


def test_every_lun_has_its_file_and_every_path_its_device() -> None:
    topology = Topology.build(Shape(luns=16, paths=4), "/t", 300)
    argv = qemu.render(REPO_ROOT / "templates", _machine(topology=topology))
    devices = [a for a in argv if a.startswith("scsi-hd,")]
    assert len(devices) == 64 and len(set(devices)) == 64
    assert len({d.split("serial=")[1].split(",")[0] for d in devices}) == 16
    assert sum("file=/t/lun15.img" in a for a in argv) == 4
    assert Shape(luns=2, paths=1).guest_table() == (
        "0 0 0QEMU_QEMU_HARDDISK_MPIO0 0:0\n1 0 0QEMU_QEMU_HARDDISK_MPIO1 0:1\n")
    assert Shape(luns=17).problems() and Shape(paths=9).problems()


def test_a_lun_that_fails_by_itself_has_blkdebug_under_each_path() -> None:
    """Raw over blkdebug over the file: the raw driver's write_aio event arms the rule, which
    fails the writes covering the sector on every path of that LUN alone; errors are
    reported to the guest (QEMU's default werror=enospc would pause it on ENOSPC)."""
    errors = (LunError(1, "write", "ENOSPC", 786432), LunError(1, "read", "ENODATA", 8, True))
    topology = Topology.build(Shape(luns=2), "/t/a,b", 512, errors)
    argv = qemu.render(REPO_ROOT / "templates", _machine(topology=topology))
    drives = [a for a in argv if a.startswith("if=none,")]
    assert drives[:2] == [topology.drive_spec(s) for s in topology.slots[:2]]
    assert all("blkdebug" not in d and "werror" not in d for d in drives[:2])
    for d in drives[2:]:
        assert "format=raw,werror=report,rerror=report,file.driver=blkdebug," in d
        assert "file.image.filename=/t/a,,b/lun1.img,file.image.locking=off" in d
        assert ("file.inject-error.0.event=write_aio,file.inject-error.0.iotype=write,"
                "file.inject-error.0.errno=28,file.inject-error.0.sector=786432,"
                "file.inject-error.0.once=off") in d
        assert "file.inject-error.1.event=read_aio" in d and "1.errno=61" in d
        assert "1.once=on" in d
    # a restored path (HMP drive_add) gets the same rules under its new drive id
    again = topology.drive_spec(PathSlot(1, 0, generation=2))
    assert again == drives[2].replace("id=l1p0,", "id=l1p0g2,")
    # what QEMU reports of a declared error is the scenario's, not the host's storage
    assert topology.declared("l1p0g2", "No space left on device")
    assert topology.declared("l1p1", "No data available")
    assert not topology.declared("l0p0", "No space left on device")
    assert not topology.declared("l1p0", "Input/output error")
    assert not topology.declared("", "No space left on device")


def test_values_stay_single_arguments() -> None:
    argv = qemu.render(REPO_ROOT / "templates", _machine())
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 quiet"
    assert "file,id=console,path=/runs/a,,b/console.log" in argv
    assert "-cpu" not in argv and "-bios" not in argv
    kvm = qemu.render(REPO_ROOT / "templates", _machine(accel="kvm", cpu="host"))
    assert kvm[kvm.index("-cpu") + 1] == "host"


def test_sockets_are_inherited_fds_in_a_run_and_paths_by_hand() -> None:
    """A run hands QEMU its end of a socket pair (no path: any TMPDIR length works); the
    script for humans has QEMU listen on paths for socat, without waiting for it."""
    run = qemu.render(REPO_ROOT / "templates", _machine(proto_socket=5, qmp_socket=7))
    assert "socket,id=proto,fd=5" in run and "socket,id=qmp,fd=7" in run
    assert not [a for a in run if ".sock" in a]
    by_hand = qemu.render(REPO_ROOT / "templates", _machine(proto_socket="/t/a,b/proto.sock"))
    assert "socket,id=proto,path=/t/a,,b/proto.sock,server=on,wait=off" in by_hand
    assert "socket,id=qmp,path=/t/qmp.sock,server=on,wait=off" in by_hand


@pytest.mark.parametrize("field, value", [
    ("cmdline", "quiet\n-device\nvirtio-net-pci"),  # issue 15: became a -device of its own
    ("cmdline", "quiet\u2028-device"),  # str.splitlines() splits on this too
    ("cmdline", "quiet\r-s"),
    ("console_log", "/runs/a\n-S/console.log"),  # a directory's name, e.g. from TMPDIR
    ("kernel", "/k/bz\x00Image"),
])
def test_a_value_never_becomes_arguments_of_its_own(field: str, value: str) -> None:
    with pytest.raises(SetupError, match="control character") as e:
        qemu.render(REPO_ROOT / "templates", _machine(**{field: value}))
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_tcg_runs_the_vcpus_in_one_thread() -> None:
    """Issue 15, case 13: with a thread per vCPU, about 1 boot in 150-300 froze in an int3
    loop on code another vCPU had just patched."""
    tcg = qemu.render(REPO_ROOT / "templates", _machine())
    assert tcg[tcg.index("-accel") + 1] == "tcg,thread=single"
    kvm = qemu.render(REPO_ROOT / "templates", _machine(accel="kvm", cpu="host"))
    assert kvm[kvm.index("-accel") + 1] == "kvm"


def test_script_for_rerun_by_hand_runs(tmp_path: Path) -> None:
    """The saved script makes its own scratch dir, LUN and initrd, and quotes every
    argument."""
    argv = ["printf", "%s\\n", "console=ttyS0 quiet",
            f"file,id=console,path={qemu.SCRATCH}/console.log", f"{qemu.SCRATCH}/lun0.img"]
    (tmp_path / "scenario layer").write_bytes(b"first")
    (tmp_path / "base").write_bytes(b"-second")
    script = tmp_path / "qemu-cmd.sh"
    topology = Topology.build(Shape(luns=2, lun_mib=4), qemu.SCRATCH, 320)
    script.write_text(qemu.as_script(argv, topology, [str(tmp_path / "scenario layer"),
                                                      str(tmp_path / "base")]))
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    run = Path(out[0].removeprefix("scratch directory: "))
    try:
        assert out[1:] == ["console=ttyS0 quiet", f"file,id=console,path={run}/console.log",
                           f"{run}/lun0.img"]
        assert (run / "lun0.img").stat().st_size == (run / "lun1.img").stat().st_size == 4 << 20
        assert (run / "initrd").read_bytes() == b"first-second"
    finally:
        shutil.rmtree(run)


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    p = tmp_path / "cpuinfo"
    p.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
    return p


def test_accel_auto(tmp_path: Path) -> None:
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    assert qemu.detect_accel("auto", _cpuinfo(tmp_path, "vmx"), kvm).name == "kvm"
    soft = qemu.detect_accel("auto", _cpuinfo(tmp_path, "hypervisor"), kvm)
    assert soft.name == "tcg" and "vmx/svm" in soft.reason
    gone = qemu.detect_accel("auto", _cpuinfo(tmp_path, "svm"), tmp_path / "missing")
    assert gone.name == "tcg" and "/dev/kvm" in gone.reason
    assert qemu.detect_accel("tcg", _cpuinfo(tmp_path, "vmx"), kvm).name == "tcg"
    assert "noapictimer" in soft.cmdline  # TCG only: the APIC timer calibration is slow
    assert qemu.detect_accel("auto", _cpuinfo(tmp_path, "vmx"), kvm).cmdline == ""


def test_accel_kvm_without_kvm_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="/dev/kvm"):
        qemu.detect_accel("kvm", _cpuinfo(tmp_path, "vmx"), tmp_path / "missing")
