"""Shared-library closure read from ELF headers, against the host's real binaries."""

from __future__ import annotations

import os

import pytest

from rapido_mpio import elfdeps


def test_multipathd_brings_its_libraries_and_loader() -> None:
    found = elfdeps.closure(["/sbin/multipathd"])
    names = {os.path.basename(p) for p in found}
    assert {"libmultipath.so.0", "libmpathutil.so.0", "libc.so.6",
            "ld-linux-x86-64.so.2"} <= names
    assert "libgcc_s.so.1" not in names  # dlopen'ed by glibc: the manifest must list it
    assert all(os.path.exists(p) for p in found)


def test_static_busybox_needs_nothing() -> None:
    assert elfdeps.closure(["/bin/busybox"]) == ["/bin/busybox"]


def test_scripts_pass_through(tmp_path: os.PathLike[str]) -> None:
    script = os.path.join(tmp_path, "s.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\n")
    assert elfdeps.closure([script]) == [script]


def test_missing_library_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elfdeps, "find_library", lambda name, search: None)
    with pytest.raises(elfdeps.MissingLibrary) as e:
        elfdeps.closure(["/sbin/dmsetup"])
    assert e.value.needed_by == "/sbin/dmsetup"
