"""The HTML report on real runs, as a browser shows it: boots failover, reinstate and the
all-paths-lost negative control (one VM at a time), builds a MatrixResult around their run
directories, writes every report and renders index.html with headless Chromium.

MPIO_SCREENSHOT=docs/matrix.png keeps the screenshot (that is how the README's is made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import kcidb_io
import pytest

from rapido_mpio import htmlpage, reports, timeline
from rapido_mpio.config import REPO_ROOT
from rapido_mpio.results import MatrixResult

from .conftest import run_cli
from .matrix_data import from_run, matrix, synthetic

pytestmark = pytest.mark.integration

SCENARIOS = ("failover", "reinstate", "all-paths-lost")
CHROMIUM_TIMEOUT = 120
WINDOW = (1280, 2200)


@pytest.fixture(scope="module")
def real_matrix(tmp_path_factory: pytest.TempPathFactory) -> tuple[MatrixResult, Path]:
    out = tmp_path_factory.mktemp("matrix")
    results = []
    for scenario in SCENARIOS:  # one after the other: one VM at a time on this machine
        p = run_cli("run", "--output-dir", str(out), "--scenario", scenario)
        assert p.returncode in (0, 1, 125), p.stdout + p.stderr
        results.append(from_run((out / "last").resolve(), out))
    return matrix([*results, *synthetic()]), out


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("no chromium: run scripts/setup.sh --test")
    # as root Chromium refuses its sandbox; its own profile keeps it off the user's
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", *args],
        capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False)


def test_fresh_runs_record_when_each_block_began(real_matrix: tuple[MatrixResult, Path]) -> None:
    m, out = real_matrix
    for r in m.results:
        if not r.run_dir or r.result == "UNTESTABLE":
            continue
        result = json.loads((out / r.run_dir / "result.json").read_text())
        assert "io-before" in result["blocks_at"], r.run_dir
        t = timeline.read(out / r.run_dir)
        assert t.io and all(s.at is not None and not s.estimated for s in t.io)
        assert t.samples and t.faults and t.kernel_events


def test_page_in_chromium(real_matrix: tuple[MatrixResult, Path], tmp_path: Path) -> None:
    m, out = real_matrix
    written = reports.write_all(m, out, REPO_ROOT / "templates",
                                kcidb_file=out / "kcidb.json")
    kcidb_io.schema.LATEST.validate(json.loads((out / "kcidb.json").read_text()))
    index = next(p for p in written if p.name == "index.html")

    dom = chromium("--dump-dom", index.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    booted = [r for r in m.results if r.run_dir]
    assert dom.stdout.count('class="timeline"') == 1 + len(booted)  # the legend, each run
    assert dom.stdout.count('<tr class="combination ') == len(m.results)
    # (path 0 or 1: the fault is aimed at the active group's path, wherever udev put it)
    assert re.search(r"fail_path 0 [01]", dom.stdout) and re.search(r"restore_path 0 [01]",
                                                                     dom.stdout)

    png = tmp_path / "matrix.png"
    shot = chromium(f"--screenshot={png}", index.as_uri(), tmp=tmp_path)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    width, height, pixels = decode_png(png.read_bytes())
    assert (width, height) == WINDOW
    colours = set(pixels)
    assert len(colours) > 50, "a blank or one-colour page"
    # the lanes are drawn: the active and failed colours are on screen
    for state in ("A", "F"):
        want = bytes.fromhex(htmlpage.STATE_COLOURS[state].removeprefix("#"))
        assert any(max(abs(a - b) for a, b in zip(c, want, strict=True)) <= 6
                   for c in colours), f"no {state} colour in the screenshot"
    if keep := os.environ.get("MPIO_SCREENSHOT"):
        shutil.copyfile(png, REPO_ROOT / keep)


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB pixels) of an 8-bit RGB or RGBA PNG, which Chromium writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
            channels = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = prev[i], (prev[i - channels] if i >= channels else 0)
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    pixels = [bytes(row[x * channels:x * channels + 3]) for row in rows for x in range(width)]
    return width, height, pixels
