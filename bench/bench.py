#!/usr/bin/env python3
"""Where a bisect step's seconds go: cut (cold, warm), image size, and boot phases.

A benchmark, not a test: it asserts nothing, prints a table and writes JSON. Medians over
--runs runs. Kernels: Debian's default kernel and a minimal one (--kernel-build, default:
the test suite's cached minimal build). The references are dracut building similar content
and the floor: the minimal kernel with a busybox-only init that reboots at once, timed in
the same run, so that figures compare as ratios on a machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rapido_mpio import cpio, image, kernel, qemu  # noqa: E402
from rapido_mpio.config import load  # noqa: E402

MPIO = [sys.executable, "-m", "rapido_mpio"]
PHASES = ("kernel_start", "init_start", "scenario_start", "verdict", "qemu_exit")


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    began = time.monotonic()
    subprocess.run(argv, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return time.monotonic() - began


def scratch_cache(real: Path, into: Path) -> Path:
    """A cache with the real downloaded/staged kernels but no image layers."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("kernels", "staged"):
        if (real / name).exists() and not (into / name).exists():
            (into / name).symlink_to(real / name)
    shutil.rmtree(into / "layers", ignore_errors=True)
    return into


def bench_kernel(name: str, kargs: list[str], runs: int, work: Path) -> dict[str, Any]:
    real_cache = load({}, environ={}).cache_dir
    out = work / f"out-{name}"
    cold, warm, whole = [], [], []
    for _ in range(runs):
        cache = scratch_cache(real_cache, work / f"cache-{name}")
        args = [*kargs, "--cache-dir", str(cache), "--output-dir", str(out)]
        cold.append(timed([*MPIO, "cut", *args]))
        for layer in (cache / "layers").glob("modules-*"):
            layer.unlink()  # a bisect step: only the kernel's modules changed
        warm.append(timed([*MPIO, "cut", *args]))
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    for _ in range(runs):
        whole.append(timed([*MPIO, "run", *kargs, "--cache-dir", str(cache), "--output-dir",
                            str(out)]))
        result = json.loads((out / "last" / "result.json").read_text())
        assert result["result"] == "PASS", f"{name}: {result['reason']}"
        for p in PHASES:
            if result["timings"][p] is not None:
                phases[p].append(result["timings"][p])
    return {
        "kernel": name,
        "cut_cold_s": statistics.median(cold),
        "cut_warm_s": statistics.median(warm),
        "image_mb": image.load_image(out / "image").size / 1e6,
        **{f"{p}_s": statistics.median(v) for p, v in phases.items() if v},
        "run_whole_s": statistics.median(whole),
    }


def bench_dracut(kargs: list[str], runs: int, work: Path,
                 compress: bool = False) -> float | None:
    """dracut packing the same binaries, files and modules: uncompressed (its fastest), or
    with its default compression (what a user gets without asking)."""
    dracut = shutil.which("dracut")
    if dracut is None:
        return None
    cfg = load({"kernel_build": kargs[1]} if kargs else {}, environ={})
    k = kernel.from_config(cfg)
    manifest = image.load_manifest(cfg.cut_dir, "mpio")
    installs = [manifest.busybox, *manifest.binaries, *manifest.files, *manifest.dlopened()]
    argv = [dracut, "--force", "--quiet", "--no-hostonly", "--no-early-microcode",
            *([] if compress else ["--no-compress"]), "--modules", "base",
            "--install", " ".join(installs),
            "--include", str(manifest.rootfs), "/", "--kver", k.release]
    if k.modules_dir is not None:
        argv += ["--kmoddir", str(k.modules_dir), "--add-drivers",
                 " ".join(manifest.modules_required + manifest.modules_optional)]
    else:
        argv += ["--no-kernel"]
    times = []
    for _ in range(runs):
        times.append(timed([*argv, str(work / "dracut.img")]))
    return statistics.median(times)


def bench_floor(tree: Path, runs: int, work: Path) -> float:
    """QEMU start to exit for the minimal kernel and an init that only reboots: what any
    boot of this machine costs, below which no scenario can go."""
    busybox = "/bin/busybox"
    initrd = work / "floor.cpio"
    with open(initrd, "wb") as out:
        cpio.write(out, [
            cpio.Entry.host_file("bin/busybox", busybox, 0o755, os.stat(busybox).st_size),
            cpio.Entry.symlink("bin/sh", "busybox"),
            cpio.Entry.file("init", b"#!/bin/sh\n/bin/busybox reboot -f\n", 0o755),
        ])
    accel = qemu.detect_accel("auto")
    argv = [qemu.find_binary("qemu-system-x86_64"), "-machine", "pc", "-accel", accel.name,
            *(["-cpu", accel.cpu] if accel.cpu else []), "-m", "1024", "-smp", "2",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            *(["-bios", str(qemu.QBOOT)] if qemu.QBOOT.exists() else []),
            "-kernel", str(tree / "arch/x86/boot/bzImage"), "-initrd", str(initrd),
            "-append", f"{qemu.BASE_CMDLINE} {accel.cmdline}",
            "-chardev", f"file,id=console,path={work / 'floor-console.log'}",
            "-serial", "chardev:console"]
    return statistics.median(timed(argv) for _ in range(runs))


def bench_matrix(tree: Path, vms: int, work: Path) -> dict[str, Any]:
    """The default matrix on the minimal kernel: wall time, and each combination's seconds
    (QEMU start to verdict) from its matrix.json."""
    out = work / f"matrix-vms{vms}"
    began = time.monotonic()
    subprocess.run([*MPIO, "matrix", "--kernel-build", str(tree), "--output-dir", str(out),
                    "--vms", str(vms)], cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    wall = time.monotonic() - began
    data = json.loads((out / "matrix.json").read_text())
    seconds = {c["id"]: c["seconds"] for c in data["combinations"] if c["run_dir"]}
    unexpected = {c["id"]: c["reason"] for c in data["combinations"]
                  if c["result"] not in ("PASS", "SKIPPED") and not (
                      c["negative_control"] or {}).get("as_declared")}
    return {"vms": vms, "wall_s": wall, "combinations": len(data["combinations"]),
            "unexpected": unexpected,
            "booted": len(seconds), "exit_code": data["exit_code"],
            "summary": data["summary"], "seconds": seconds}


def minimal_tree(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("RAPIDO_MPIO_TEST_KERNELS")
                 or load({}, environ={}).cache_dir / "test-kernels")
    built = sorted(cache.glob("*/build/arch/x86/boot/bzImage"))
    return built[-1].parents[3] if built else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kernel-build", help="minimal kernel build directory")
    parser.add_argument("--json", default=str(REPO / "bench" / "latest.json"))
    parser.add_argument("--matrix-vms", default="1,2",
                        help="VMs at a time for the default matrix on the minimal kernel, "
                        "one matrix run per value (empty: no matrix)")
    parser.add_argument("--only-matrix", action="store_true",
                        help="the floor and the matrix only (no cut, boot or dracut rows)")
    args = parser.parse_args()
    kernels: list[tuple[str, list[str]]] = [("default", [])]
    tree = minimal_tree(args.kernel_build)
    if tree is not None:
        kernels.append(("minimal", ["--kernel-build", str(tree)]))
    rows = []
    floor = None
    matrices: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rapido-mpio-bench-") as tmp:
        if tree is not None:
            floor = bench_floor(tree, args.runs, Path(tmp))
            for vms in filter(None, args.matrix_vms.split(",")):
                m = bench_matrix(tree, int(vms), Path(tmp))
                m["wall_floors"] = m["wall_s"] / floor
                m["median_combination_floors"] = statistics.median(
                    m["seconds"].values()) / floor if m["seconds"] else None
                matrices.append(m)
            floor_after = bench_floor(tree, args.runs, Path(tmp))
            print(f"floor {floor:.3f}s before, {floor_after:.3f}s after the matrices")
        for name, kargs in ([] if args.only_matrix else kernels):
            row = bench_kernel(name, kargs, args.runs, Path(tmp))
            dracut = bench_dracut(kargs, args.runs, Path(tmp))
            row["dracut_s"] = dracut
            row["dracut_compressed_s"] = bench_dracut(kargs, args.runs, Path(tmp), True)
            row["dracut_over_warm_cut"] = dracut / row["cut_warm_s"] if dracut else None
            row["dracut_over_cold_cut"] = dracut / row["cut_cold_s"] if dracut else None
            if floor is not None:
                row["floor_s"] = floor
                row["verdict_floors"] = row["verdict_s"] / floor
                row["run_whole_floors"] = row["run_whole_s"] / floor
            rows.append(row)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "kernel": platform.release()},
              "runs": args.runs, "rows": rows, "floor_s": floor, "matrices": matrices}
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    cols = ["kernel", "floor_s", "cut_cold_s", "cut_warm_s", "image_mb", "kernel_start_s",
            "init_start_s", "scenario_start_s", "verdict_s", "verdict_floors", "qemu_exit_s",
            "run_whole_s", "run_whole_floors",
            "dracut_s", "dracut_compressed_s", "dracut_over_warm_cut", "dracut_over_cold_cut"]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(_fmt(row.get(c)) for c in cols))
    for m in matrices:
        print(f"default matrix, minimal kernel, {m['vms']} VM(s) at a time: "
              f"{m['combinations']} combinations ({m['booted']} booted), "
              f"{m['wall_s']:.1f}s wall = {m['wall_floors']:.1f} floors; median combination "
              f"{_fmt(m['median_combination_floors'])} floors; exit {m['exit_code']}")
        for cid, why in m["unexpected"].items():
            print(f"  NOT AS EXPECTED: {cid}: {why}")
        for cid, sec in sorted(m["seconds"].items(), key=lambda kv: kv[1]):
            print(f"  {sec:6.2f}s {sec / floor:5.1f} floors  {cid}" if floor else cid)
    print(f"(medians of {args.runs} runs; JSON in {args.json})")
    return 0


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
