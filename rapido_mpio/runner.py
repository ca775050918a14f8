"""The pipeline, config -> kernel -> image -> vm -> verdict, for the CLI and for bisect."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rapido_mpio.config import Config
from rapido_mpio.errors import MpioError, SetupError

if TYPE_CHECKING:  # cut must not pay for importing the boot side
    from rapido_mpio.image import Image
    from rapido_mpio.verdict import Verdict


@dataclasses.dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    run_dir: Path
    seconds: float


def cut(cfg: Config, log: TextIO = sys.stderr) -> Image:
    from rapido_mpio import image, kernel, scenario

    began = time.monotonic()
    sc = scenario.load(cfg.cut_dir, cfg.scenario)
    manifest = image.load_manifest(cfg.cut_dir, sc.image)
    k = kernel.from_config(cfg)
    kernel.check_config(k)
    img = image.cut(manifest, k, sc, cfg.cache_dir, cfg.output_dir / "image", cfg.compression)
    size = img.initrd.stat().st_size
    print(f"rapido-mpio: cut {sc.name} for {k.label} ({k.release}): {img.initrd} "
          f"{size / 1e6:.1f} MB in {time.monotonic() - began:.2f}s", file=log)
    return img


def boot(cfg: Config, out: TextIO = sys.stdout, log: TextIO = sys.stderr) -> Outcome:
    from rapido_mpio import image, report, verdict, vm

    began = time.monotonic()
    img = image.load_image(cfg.output_dir / "image")
    if img.scenario.name != cfg.scenario:
        raise SetupError(f"The image in {cfg.output_dir / 'image'} was cut for scenario "
                         f"{img.scenario.name}, not {cfg.scenario}.",
                         hint=f"Cut it again with --scenario {cfg.scenario}, or use run.")
    run_dir = _new_run_dir(cfg.output_dir, img.scenario.name)
    record = vm.boot(img, cfg, run_dir)
    result = verdict.decide(record, img.scenario.name)
    report.save(record, result, img, cfg.output_dir)
    print(f"rapido-mpio: {img.kernel_label} {img.kernel_release}, {record.accel}", file=log)
    report.print_summary(result, record, out)
    return Outcome(result, run_dir, time.monotonic() - began)


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
