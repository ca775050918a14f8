"""files.link_atomic: the run directory's `last` link is replaced in one step, so a reader
(a second matrix, a user's `cat last/result.json`) never finds it missing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from rapido_mpio import files


def test_a_reader_never_finds_the_link_missing(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    link = tmp_path / "last"
    files.link_atomic(link, "a")
    missing = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                os.readlink(link)
            except FileNotFoundError:
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(2000):
            files.link_atomic(link, "ab"[i % 2])
    finally:
        stop.set()
        reader.join()
    assert missing == []
    assert os.readlink(link) == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "last"]  # no temp left
