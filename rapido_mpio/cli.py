"""Command line: cut, boot, run (cut + boot, the git bisect run entry point), defaults.

Exit codes: 0 PASS, 1 FAIL, 125 untestable kernel (bisect skip), 255 broken setup.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rapido_mpio import config
from rapido_mpio.errors import ExitCode, MpioError, SetupError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rapido-mpio",
        description="Boot a minimal initramfs in QEMU with two SCSI paths to one LUN, pull a "
        "path under a mounted XFS and report whether dm-multipath failed over.",
        epilog="Exit codes: 0 PASS, 1 FAIL (regression), 125 kernel cannot be tested "
        "(git bisect skip), 255 broken setup (stops a bisect).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("cut", "build the image (kernel modules + userspace + scenario)"),
        ("boot", "boot the image that cut built and run its scenario"),
        ("run", "cut, then boot; the command to put under `git bisect run`"),
        ("defaults", "print the documented configuration file with every default"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != "defaults":
            config.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "defaults":
        print(config.render_defaults())
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cfg = config.load(vars(args))
        if args.command == "cut":
            cut(cfg)
            return 0
        if args.command == "boot":
            return boot(cfg)
        cut(cfg)
        return boot(cfg)
    except MpioError as e:
        print(f"rapido-mpio: {e}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print("rapido-mpio: interrupted; QEMU was stopped.", file=sys.stderr)
        return int(ExitCode.SETUP)
    except Exception:  # a bug in rapido-mpio: abort a bisect rather than blame the kernel
        traceback.print_exc()
        print("rapido-mpio: internal error (above); please report it.", file=sys.stderr)
        return int(ExitCode.SETUP)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the same cleanup as Ctrl-C


def cut(cfg: config.Config) -> None:
    from rapido_mpio import image, kernel, scenario

    began = time.monotonic()
    sc = scenario.load(cfg.cut_dir, cfg.scenario)
    manifest = image.load_manifest(cfg.cut_dir, sc.image)
    k = kernel.from_config(cfg)
    kernel.check_config(k)
    img = image.cut(manifest, k, sc, cfg.cache_dir, cfg.output_dir / "image", cfg.compression)
    size = img.initrd.stat().st_size
    print(f"rapido-mpio: cut {sc.name} for {k.label} ({k.release}): {img.initrd} "
          f"{size / 1e6:.1f} MB in {time.monotonic() - began:.2f}s", file=sys.stderr)


def boot(cfg: config.Config) -> int:
    from rapido_mpio import image, report, verdict, vm

    img = image.load_image(cfg.output_dir / "image")
    if img.scenario.name != cfg.scenario:
        raise SetupError(f"The image in {cfg.output_dir / 'image'} was cut for scenario "
                         f"{img.scenario.name}, not {cfg.scenario}.",
                         hint=f"Cut it again with --scenario {cfg.scenario}, or use run.")
    run_dir = _new_run_dir(cfg.output_dir, img.scenario.name)
    record = vm.boot(img, cfg, run_dir)
    result = verdict.decide(record, img.scenario.name)
    report.save(record, result, img, cfg.output_dir)
    print(f"rapido-mpio: {img.kernel_label} {img.kernel_release}, {record.accel}",
          file=sys.stderr)
    report.print_summary(result, record, sys.stdout)
    return int(result.exit_code)


def _new_run_dir(output_dir: Path, scenario: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs = output_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        candidate = runs / (f"{stamp}-{scenario}" + (f"-{n}" if n else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise MpioError(f"Cannot create a run directory under {runs}.")
