"""Image manifests: one may extend another, adding to it; a loop is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapido_mpio import image
from rapido_mpio.config import REPO_ROOT
from rapido_mpio.errors import SetupError


def test_mpio_fio_is_mpio_plus_fio() -> None:
    base = image.load_manifest(REPO_ROOT / "cut", "mpio")
    fio = image.load_manifest(REPO_ROOT / "cut", "mpio-fio")
    assert "/usr/bin/fio" not in base.binaries  # no other boot carries fio's ~75 MB
    assert fio.binaries == (*base.binaries, "/usr/bin/fio")
    assert (fio.dlopen, fio.files, fio.links, fio.rootfs, fio.modules_required) == \
        (base.dlopen, base.files, base.links, base.rootfs, base.modules_required)
    assert image.base_key(fio, "none") != image.base_key(base, "none")


def test_a_manifest_that_extends_itself(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(SetupError, match="extends itself"):
        image.load_manifest(tmp_path, "a")
