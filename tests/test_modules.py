"""Module resolution: dependencies, softdeps through aliases, builtins, missing names."""

from __future__ import annotations

from pathlib import Path

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
