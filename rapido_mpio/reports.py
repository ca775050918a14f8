"""Every report on a matrix result, written in one call: what `rapido-mpio matrix` calls."""

from __future__ import annotations

from pathlib import Path

from rapido_mpio import htmlpage, junit, kcidb
from rapido_mpio.results import MatrixResult


def write_all(result: MatrixResult, out_dir: Path, templates_dir: Path,
              kcidb_file: Path | None = None, origin: str = "rapido_mpio") -> list[Path]:
    """matrix.json, junit.xml and index.html in out_dir (which run_dirs are relative to),
    and the KCIDB file when one is asked for. Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [result.write(out_dir / "matrix.json"),
               junit.write(result, out_dir / "junit.xml"),
               htmlpage.write(result, out_dir, templates_dir)]
    if kcidb_file is not None:
        written.append(kcidb.write(result, out_dir, kcidb_file, origin))
    return written
