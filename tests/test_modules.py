"""Module resolution: dependencies, softdeps through aliases, builtins, missing names."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapido_mpio.modules import ModuleIndex


def _index(tmp_path: Path) -> ModuleIndex:
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n"
        "kernel/lib/libcrc32c.ko:\n"
        "kernel/crypto/crc32c_generic.ko:\n"
        "kernel/arch/x86/crypto/crc32c-intel.ko:\n"
        "kernel/drivers/md/dm-multipath.ko: kernel/drivers/md/dm-mod.ko\n"
        "kernel/drivers/md/dm-round-robin.ko: kernel/drivers/md/dm-multipath.ko "
        "kernel/drivers/md/dm-mod.ko\n"
        "kernel/drivers/md/dm-mod.ko:\n")
    (tmp_path / "modules.softdep").write_text(
        "# Soft dependencies extracted from modules themselves.\n"
        "softdep libcrc32c pre: crc32c\n")
    (tmp_path / "modules.alias").write_text(
        "alias crc32c crc32c_intel\nalias crc32c crc32c_generic\nalias scsi:t-0x00* sd_mod\n")
    (tmp_path / "modules.builtin").write_text("kernel/drivers/scsi/sd_mod.ko\n")
    return ModuleIndex.load(tmp_path)


def test_softdep_is_loaded_before_the_module_that_wants_it(tmp_path: Path) -> None:
    order, missing = _index(tmp_path).resolve(["xfs"])
    assert missing == []
    assert order == ["kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/crypto/crc32c_generic.ko",
                     "kernel/lib/libcrc32c.ko", "kernel/fs/xfs/xfs.ko"]


def test_dependencies_come_first_once(tmp_path: Path) -> None:
    order, _ = _index(tmp_path).resolve(["dm-round-robin", "dm_multipath", "dm_mod"])
    assert order == ["kernel/drivers/md/dm-mod.ko", "kernel/drivers/md/dm-multipath.ko",
                     "kernel/drivers/md/dm-round-robin.ko"]


def test_builtin_is_skipped_and_unknown_is_reported(tmp_path: Path) -> None:
    order, missing = _index(tmp_path).resolve(["sd_mod", "scsi:t-0x00", "virtio_scsi"])
    assert order == []
    assert missing == ["virtio_scsi"]


PATTERNS = ["pci:v00001AF4d*sv*", "*-crc32c", "virtio:d0000000[28]v*", "fs-xfs", "scsi:t-0x0?*",
            "dm-*", "[a-c]x", "pci:v*d*"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PATTERNS).flatmap(
    lambda p: st.one_of(st.just(p.replace("*", "").replace("?", "0")),
                        st.text("pcidmvx0123456789:-*[]?AFs", max_size=24))))
def test_alias_globs_match_as_fnmatch_does(tmp_path_factory: pytest.TempPathFactory,
                                           wanted: str) -> None:
    """Only patterns whose literal head the name starts with are compiled (the rest cannot
    match): the answer must be fnmatch's over every pattern, whatever the name."""
    root = tmp_path_factory.mktemp("m")
    (root / "modules.alias").write_text(
        "".join(f"alias {p} mod{i}\n" for i, p in enumerate(PATTERNS)))
    index = ModuleIndex.load(root)
    expected = [f"mod{i}" for i, p in enumerate(PATTERNS)
                if any(c in p for c in "*?[") and fnmatch.fnmatchcase(wanted, p)]
    if wanted not in PATTERNS:  # an exact alias wins over the globs
        assert index.alias_matches(wanted) == expected
