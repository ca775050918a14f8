"""The host's file systems: full, read-only or deep in a long path, a run ends in one
sentence naming the file system and exit 255, never a verdict (issue 15, cases 1 and 12).

The file systems are small tmpfs mounts made here (so these tests need root); the disk-full
and the long-TMPDIR cases boot a real QEMU.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rapido_mpio import hostfs
from rapido_mpio.errors import SetupError

from .conftest import last_result, qemu_processes_for, run_cli
from .test_bad_input import _fake_image, assert_one_sentence
from .test_hostile_guest import FAKE_QEMU

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (needs root)")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's size=, e.g. 512k or 400m) at path, unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(path: Path, leave: int = 64 << 10) -> None:
    """Take all but `leave` bytes of the file system path is on."""
    with open(path / "filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, hostfs.Room.of(path).free - leave)


# --- the pieces ----------------------------------------------------------------------------

def test_a_full_file_system_names_the_place_it_failed_in(tmp_path: Path) -> None:
    out = hostfs.Place(tmp_path / "out", "the run's result", "Choose another --output-dir.")
    scratch = hostfs.Place(tmp_path / "tmp", "the run's scratch files", "Set TMPDIR.")
    with pytest.raises(SetupError) as caught, hostfs.writes_to(out, scratch):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "tmp/lun0.img"))
    text = str(caught.value)
    assert text.startswith(f"Cannot write the run's scratch files in {tmp_path / 'tmp'}: "
                           "the file system at /")
    assert "free) is full. Set TMPDIR." in text
    with pytest.raises(SetupError, match="is read-only. Choose another --output-dir"), \
            hostfs.writes_to(out):
        raise OSError(errno.EROFS, "Read-only file system")  # a write names no file
    with pytest.raises(PermissionError), hostfs.writes_to(out):  # not a question of room
        raise PermissionError(errno.EACCES, "Permission denied")


def test_room_before_boot(tmp_path: Path) -> None:
    place = hostfs.Place(tmp_path / "not/made/yet", "the scratch files", "Set TMPDIR.")
    hostfs.check_room(place, 1, "one byte")
    with pytest.raises(SetupError, match=r"has .* free, too little for the scratch files in "
                       r".*not/made/yet: a run needs .* there \(all of it\)\. Set TMPDIR\."):
        hostfs.check_room(place, 1 << 62, "all of it")
    assert hostfs.human_size(320 << 20) == "320.0 MiB" and hostfs.human_size(65536) == "64 KiB"


# --- the real CLI, no QEMU started ----------------------------------------------------------

@needs_root
def test_no_room_for_the_luns_is_refused_before_boot(tmp_path: Path) -> None:
    _fake_image(tmp_path / "out")
    with tmpfs(tmp_path / "small", "16m") as small:
        p = run_cli("boot", "--output-dir", str(tmp_path / "out"), "--accel", "tcg",
                    cwd=tmp_path, env={"TMPDIR": str(small)})
    assert_one_sentence(p, 255, f"The file system at {small} has 16.0 MiB free",
                        "a run needs 320.0 MiB", "set TMPDIR to another file system")
    assert not list((tmp_path / "out/runs").glob("*/qemu.log"))  # QEMU never started


@needs_root
def test_read_only_output_dir(tmp_path: Path) -> None:
    """runs/ is already there, so making it succeeds: the run's own directory does not."""
    with tmpfs(tmp_path / "out", "4m") as out:
        _fake_image(out)
        (out / "runs").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        p = run_cli("boot", "--output-dir", str(out), "--accel", "tcg", cwd=tmp_path)
    assert_one_sentence(p, 255, f"Cannot write to the output directory {out}",
                        "read-only file system", "--output-dir")


@needs_root
def test_output_dir_filling_up_mid_run(tmp_path: Path) -> None:
    """The stand-in QEMU answers QMP and floods the protocol channel: the run's logs fill
    the output directory's file system."""
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_QEMU} \"$@\"\n")
    qemu.chmod(0o755)
    (tmp_path / "guest").write_bytes(b"@@MPIO:START failover 0.5\n")
    with tmpfs(tmp_path / "out", "512k") as out:
        _fake_image(out)
        p = run_cli("boot", "--output-dir", str(out), "--accel", "tcg", "--qemu", str(qemu),
                    cwd=tmp_path, env={"FAKE_QEMU_GUEST": str(tmp_path / "guest"),
                                       "FAKE_QEMU_FLOOD": "1"})
        runs = list((out / "runs").iterdir())
        assert len(runs) == 1 and (runs[0] / "protocol.log").stat().st_size > 100_000
        assert not (runs[0] / "result.json").exists()  # not half of one either
    assert_one_sentence(p, 255, f"Cannot write the run's result in {out}",
                        f"the file system at {out} (", "free) is full",
                        "choose another --output-dir")
    assert not processes_running(out)  # the stand-in (its console is there) ended with the run


def processes_running(program: Path) -> list[str]:
    """Processes whose command line names `program` (a path: a script, or a file it uses)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if str(program).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


# --- real boots -----------------------------------------------------------------------------

@needs_root
@pytest.mark.integration
def test_host_disk_full_under_a_running_guest_is_a_setup_error(out: Path,
                                                               tmp_path: Path) -> None:
    """QEMU pauses the guest on a write its host file system has no room for (werror=enospc):
    before, the guest hung in map_and_filesystem and the run said FAIL (exit 1)."""
    layers = sum(Path(p).stat().st_size for p in json.loads(
        (out / "image/image.json").read_text())["layers"])
    # room for the initrd and the one LUN the pre-boot check asks for; the cached layers
    # stay on their own file system (the initrd is copied across)
    size = (layers + (320 << 20)) // (1 << 20) + 24
    with tmpfs(tmp_path / "fs", f"{size}m") as fs:
        (tmp_path / "run/image").mkdir(parents=True)
        shutil.copy(out / "image/image.json", tmp_path / "run/image/image.json")
        (fs / "tmp").mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rapido_mpio", "boot", "--output-dir",
             str(tmp_path / "run")], env={**os.environ, "TMPDIR": str(fs / "tmp")},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        began = time.monotonic()
        # once QEMU runs (the initrd is written), long before the guest's mkfs.xfs
        while not list((tmp_path / "run").glob("runs/*/console.log")) and proc.poll() is None:
            time.sleep(0.1)
        fill(fs)
        stdout, stderr = proc.communicate(timeout=300)
    p = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert_one_sentence(p, 255, "QEMU paused the guest: writing a LUN's backing file failed "
                        "(No space left on device)", f"the file system at {fs} (",
                        "set TMPDIR to another file system")
    assert time.monotonic() - began < 120  # noticed at once, not at the step's deadline
    result = last_result(tmp_path / "run")
    assert result["result"] == "ERROR" and result["exit_code"] == 255
    assert qemu_processes_for(tmp_path) == []


@pytest.mark.integration
def test_long_tmpdir_boots_to_pass(out: Path, tmp_path: Path) -> None:
    """Before, a TMPDIR of 90+ characters left no room for a socket path (108 bytes)."""
    tmpdir = tmp_path / ("a-rather-long-directory-name-" * 6)
    tmpdir.mkdir()
    assert len(str(tmpdir)) > 150
    p = run_cli("boot", "--output-dir", str(out), env={"TMPDIR": str(tmpdir)})
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: PASS" in p.stdout
    assert list(tmpdir.iterdir()) == []  # the scratch dir is gone with the run
    script = (out / "last/qemu-cmd.sh").read_text()  # still the sockets socat can reach
    assert "path='\"$RUN\"'/proto.sock,server=on,wait=off'" in script
