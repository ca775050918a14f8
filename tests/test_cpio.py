"""The newc writer: what cpio(1) and the kernel read back, byte for byte reproducible."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

from rapido_mpio import cpio


def _entries(tmp_path: Path) -> list[cpio.Entry]:
    host = tmp_path / "host.bin"
    host.write_bytes(os.urandom(70_001))  # not a multiple of 4: exercises padding
    return [
        cpio.Entry.file("etc/b.conf", b"hello\n"),
        cpio.Entry.symlink("bin", "usr/bin"),
        cpio.Entry.host_file("usr/lib/x/host.bin", str(host), 0o755, host.stat().st_size),
        cpio.Entry.file("init", b"#!/bin/sh\n", 0o755),
    ]


def test_cpio_tool_extracts_what_was_written(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    with open(archive, "wb") as f:
        size = cpio.write(f, _entries(tmp_path))
    assert size == archive.stat().st_size and size % 512 == 0
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive.read_bytes(),
                             capture_output=True, check=True).stdout.decode().split()
    # parents are added and come before their children
    assert listing == ["bin", "etc", "etc/b.conf", "init", "usr", "usr/lib", "usr/lib/x",
                       "usr/lib/x/host.bin"]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=archive.read_bytes(), cwd=out, check=True)
    assert (out / "etc/b.conf").read_bytes() == b"hello\n"
    assert (out / "usr/lib/x/host.bin").read_bytes() == (tmp_path / "host.bin").read_bytes()
    assert os.readlink(out / "bin") == "usr/bin"
    assert os.stat(out / "init").st_mode & 0o777 == 0o755
    assert os.stat(out / "usr/lib/x/host.bin").st_mtime == 0


def test_same_inputs_give_same_bytes_in_any_order(tmp_path: Path) -> None:
    entries = _entries(tmp_path)
    one, two = io.BytesIO(), io.BytesIO()
    cpio.write(one, entries)
    cpio.write(two, list(reversed(entries)))
    assert one.getvalue() == two.getvalue()


def test_concatenated_archives_are_read_as_layers(tmp_path: Path) -> None:
    both = io.BytesIO()
    cpio.write(both, [cpio.Entry.file("a", b"1")])
    cpio.write(both, [cpio.Entry.file("b", b"2")])
    out = tmp_path / "out"
    out.mkdir()
    # cpio(1) stops at the first trailer, like a naive reader; the kernel reads on: check
    # that the second archive starts on a 512-byte boundary, as the kernel expects
    first_end = both.getvalue().index(b"TRAILER!!!")
    second = both.getvalue().index(b"070701", first_end)
    assert second % 512 == 0
    subprocess.run(["cpio", "-idm", "--quiet"], input=both.getvalue()[second:], cwd=out,
                   check=True)
    assert (out / "b").read_bytes() == b"2"
