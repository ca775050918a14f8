"""The cache and what cut writes (issue 15, cases 2, 7 and 8): layers copied across file
systems, no partial file after an interrupted or failed cut, a bounded cache, and cuts run
at once into one cache and one output directory."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import lzma
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rapido_mpio import cache, image, kernel, scenario
from rapido_mpio.config import REPO_ROOT, SETTINGS_BY_NAME
from rapido_mpio.image import Image, assemble, load_image

from .conftest import last_result, qemu_processes_for, run_cli


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of its own at `path` (root only: skipped elsewhere), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def temp_files(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.is_dir() for p in d.rglob(".tmp-*")]


# --- case 2: TMPDIR on a tmpfs, the cache on disk ------------------------------------------


def test_layers_are_copied_into_an_initrd_on_another_file_system(tmp_path: Path) -> None:
    """copy_file_range says EXDEV across file systems; the initrd is still written whole."""
    layers = []
    for i in range(2):
        layer = tmp_path / f"layer{i}.cpio"
        layer.write_bytes(os.urandom(3 << 20) + bytes([i]))
        layers.append(layer)
    img = Image("mpio", Path("vmlinuz"), "6.1.0-fake", "fake", tuple(layers))
    sc = scenario.load(REPO_ROOT / "cut", "failover")
    with tmpfs(tmp_path / "tmpfs", "32m") as scratch:
        first = assemble(img, sc, scratch / "initrd")
        written = (scratch / "initrd").read_bytes()
    assert written == first + b"".join(p.read_bytes() for p in layers)


# --- case 7: the cache is bounded ----------------------------------------------------------


def layer_file(path: Path, size: int, age: float) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: the bound counts what the layer would take
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_least_recently_used_layers_go_beyond_the_bound(tmp_path: Path) -> None:
    hour = 3600.0
    oldest = layer_file(tmp_path / "base-a.cpio", 40, 5 * hour)
    old_but_kept = layer_file(tmp_path / "modules-b.cpio", 40, 4 * hour)
    older = layer_file(tmp_path / "base-c.cpio", 40, 3 * hour)
    newer = layer_file(tmp_path / "base-d.cpio", 40, 2 * hour)
    recent = layer_file(tmp_path / "base-e.cpio", 40, 60)  # a matrix may still boot it
    stale_temp = layer_file(tmp_path / ".tmp-killed", 10, 2 * hour)  # a cut killed by -9
    live_temp = layer_file(tmp_path / ".tmp-writing", 10, 1)  # a cut writing now
    gone = cache.evict(tmp_path, keep=[old_but_kept], bound=120, grace=hour)
    assert sorted(gone) == sorted([oldest, older, stale_temp])
    assert sorted(tmp_path.iterdir()) == sorted([old_but_kept, newer, recent, live_temp])
    # used again: now the most recent, so the next eviction takes another
    cache.used(newer)
    layer_file(tmp_path / "base-f.cpio", 40, 1.5 * hour)
    assert cache.evict(tmp_path, keep=[], bound=120, grace=hour) == [old_but_kept]


def test_within_the_bound_nothing_goes(tmp_path: Path) -> None:
    layer_file(tmp_path / "base-a.cpio", 40, 10 * 3600)
    assert cache.evict(tmp_path, keep=[], bound=100, grace=0) == []


# --- case 8: unpacking the default kernel, several at once ---------------------------------


def test_concurrent_unpacking_of_the_kernel_never_follows_a_planted_link(
        tmp_path: Path) -> None:
    elf = b"\x7fELF" + os.urandom(4 << 20)
    bzimage = tmp_path / "vmlinuz-6.1.0-fake"
    bzimage.write_bytes(b"setup code" * 100 + lzma.compress(elf, format=lzma.FORMAT_XZ,
                                                            preset=0))
    vmlinux = tmp_path / "vmlinux-6.1.0-fake"
    victim = tmp_path / "victim"
    victim.write_text("not yours\n")
    vmlinux.with_suffix(".tmp").symlink_to(victim)  # the old fixed temp name
    for _ in range(2):
        vmlinux.unlink(missing_ok=True)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            done = list(pool.map(lambda _: kernel._uncompressed(bzimage, vmlinux), range(6)))
        assert done == [vmlinux] * 6
        assert vmlinux.read_bytes() == elf
    assert victim.read_text() == "not yours\n"
    assert temp_files(tmp_path) == []


def test_cuts_at_once_into_one_output_dir_all_write_image_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing image.json, 8 at a time (the layers are built elsewhere: faked here)."""
    base, mods = tmp_path / "base.cpio", tmp_path / "modules.cpio"
    base.write_bytes(b"base")
    mods.write_bytes(b"modules")
    monkeypatch.setattr(image, "build_base", lambda *_: base)
    monkeypatch.setattr(image, "build_modules", lambda *_: mods)
    manifest = image.load_manifest(REPO_ROOT / "cut", "mpio")
    k = kernel.Kernel(tmp_path / "vmlinuz", "6.1.0-fake", {}, None, "fake", "fake kernel")
    out = tmp_path / "out" / "image"

    def cuts(_: int) -> None:
        for _ in range(30):
            image.cut(manifest, k, tmp_path / "cache", out, "none")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(cuts, range(8)))
    assert load_image(out).layers == (base, mods)
    assert sorted(p.name for p in out.iterdir()) == ["image.json"]


# --- cuts through the CLI, on the default kernel -------------------------------------------

CACHE = SETTINGS_BY_NAME["cache_dir"].default  # the developer's or CI's, holding the kernel


@pytest.fixture(scope="module")
def default_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default kernel, downloaded into the usual cache once (the first cut does it)."""
    p = run_cli("cut", "--output-dir", str(tmp_path_factory.mktemp("warm")))
    assert p.returncode == 0, p.stderr
    kernels: Path = CACHE / "kernels"
    return kernels


def cold_cache(root: Path, kernels: Path) -> Path:
    """A cache with no layer in it, sharing the downloaded kernel."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "kernels").symlink_to(kernels)
    return root


def cut(out: Path, cache_dir: Path, *args: str) -> subprocess.Popen[str]:
    """A cut in the background, as run_cli runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPIDO_MPIO_")
           and k not in ("KERNEL_SRC", "KBUILD_OUTPUT")}
    return subprocess.Popen([sys.executable, "-m", "rapido_mpio", "cut", "--output-dir",
                             str(out), "--cache-dir", str(cache_dir), *args], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def processes_for(path: Path) -> list[str]:
    """Command lines of the processes that name `path`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(path) in line:
                found.append(line)
    return found


@pytest.mark.integration
def test_sigterm_during_a_cold_cut_leaves_no_partial_layer(default_kernel: Path,
                                                           tmp_path: Path) -> None:
    rng = random.Random(15)
    interrupted = 0
    for attempt in range(4):
        cache_dir = cold_cache(tmp_path / f"cache{attempt}", default_kernel)
        layers = cache_dir / "layers"
        proc = cut(tmp_path / f"out{attempt}", cache_dir)
        deadline = time.monotonic() + 60
        while not temp_files(layers) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert temp_files(layers), "the cut ended before it wrote a layer"
        time.sleep(rng.uniform(0, 0.5))  # somewhere in the base layer, or the modules one
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert "Traceback" not in stderr
        assert temp_files(cache_dir, tmp_path / f"out{attempt}") == []
        if "rapido-mpio: cut " not in stderr:  # else it was done before the signal came
            assert proc.returncode == 255, stderr
            interrupted += 1
    assert interrupted >= 2


@pytest.mark.integration
def test_sigterm_while_zstd_packs_a_layer_stops_zstd_too(default_kernel: Path,
                                                         tmp_path: Path) -> None:
    """Left running, zstd would write on into the temp file the cut's cleanup removed."""
    cache_dir = cold_cache(tmp_path / "cache", default_kernel)
    proc = cut(tmp_path / "out", cache_dir, "--compression", "zstd")
    deadline = time.monotonic() + 120
    while not any(line.split()[0].endswith("zstd") for line in processes_for(cache_dir)) \
            and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the cut ended before zstd started"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 255 and "Traceback" not in stderr, stderr
    assert processes_for(cache_dir) == []
    assert temp_files(cache_dir) == []


@pytest.mark.integration
def test_a_full_cache_is_one_sentence_and_leaves_nothing(default_kernel: Path,
                                                         tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tiny", "4m") as tiny:
        cache_dir = cold_cache(tiny, default_kernel)
        p = run_cli("cut", "--output-dir", str(tmp_path / "out"), "--cache-dir",
                    str(cache_dir))
        leftovers = temp_files(cache_dir)
    assert p.returncode == 255, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"Cannot write the cache's files in {cache_dir / 'layers'}: the file system at " \
        in lines[0]
    assert " free) is full" in lines[0] and "--cache-dir" in lines[0]
    assert leftovers == []


@pytest.mark.integration
def test_a_cut_evicts_the_least_recently_used_layers(default_kernel: Path,
                                                     tmp_path: Path) -> None:
    cache_dir = cold_cache(tmp_path / "cache", default_kernel)
    (cache_dir / "layers").mkdir()
    stale = layer_file(cache_dir / "layers" / "base-stale.cpio", cache.LAYERS_BOUND, 86400)
    p = run_cli("cut", "--output-dir", str(tmp_path / "out"), "--cache-dir", str(cache_dir))
    assert p.returncode == 0, p.stderr
    assert not stale.exists()
    assert all(layer.is_file() for layer in load_image(tmp_path / "out" / "image").layers)


@pytest.mark.integration
def test_concurrent_cuts_into_one_cache_and_one_output_dir(default_kernel: Path,
                                                            tmp_path: Path) -> None:
    cache_dir = cold_cache(tmp_path / "cache", default_kernel)
    out = tmp_path / "out"
    for state, cuts in (("cold", 3), ("warm", 4)):
        procs = [cut(out, cache_dir) for _ in range(cuts)]
        for proc in procs:
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"{state}: {stderr}"
        image = json.loads((out / "image" / "image.json").read_text())
        assert all(Path(p).is_file() for p in image["layers"]), state
        assert temp_files(cache_dir, out) == [], state


@pytest.mark.integration
def test_a_link_planted_at_the_old_temp_name_is_not_followed(default_kernel: Path,
                                                             tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("not yours\n")
    out = tmp_path / "out"
    (out / "image").mkdir(parents=True)
    (out / "image" / ".image.json").symlink_to(victim)
    p = run_cli("cut", "--output-dir", str(out))
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == "not yours\n"
    assert not (out / "image" / "image.json").is_symlink()
    assert load_image(out / "image").kernel_release


@pytest.mark.integration
def test_boot_with_tmpdir_on_a_tmpfs_passes(default_kernel: Path, tmp_path: Path) -> None:
    """Fedora, Arch and Debian 13 put /tmp on a tmpfs; the cache stays on disk."""
    out = tmp_path / "out"
    # room for what a run checks for before boot: the initrd and one LUN in full (a tmpfs
    # costs only what is written)
    with tmpfs(tmp_path / "tmp", "512m") as tmp:
        p = run_cli("run", "--output-dir", str(out), env={"TMPDIR": str(tmp)})
        assert qemu_processes_for(tmp) == []
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: PASS" in p.stdout
    assert last_result(out)["result"] == "PASS"
