"""Configuring and building a kernel tree with the kernel's own tools (merge_config.sh, make).

Used by `rapido-mpio kconfig` and by each bisect step. Only what the user asked for is
written into the tree: a .config and a build.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rapido_mpio import command
from rapido_mpio.config import Config
from rapido_mpio.errors import SetupError
from rapido_mpio.kernel import FRAGMENT, read_config, required_options


@dataclasses.dataclass(frozen=True)
class Tree:
    src: Path
    build: Path

    @property
    def out_of_tree(self) -> bool:
        return self.build.resolve() != self.src.resolve()

    def make(self, *targets: str, jobs: int = 1, extra: tuple[str, ...] = ()) -> list[str]:
        argv = ["make", "-C", str(self.src)]
        if self.out_of_tree:
            argv.append(f"O={self.build}")
        return [*argv, f"-j{jobs}", *extra, *targets]


def tree_of(cfg: Config) -> Tree:
    src = cfg.kernel_src
    if src is None:
        raise SetupError("No kernel tree given.",
                         hint="Set KERNEL_SRC (or --kernel-src) to a Linux source tree.")
    if not (src / "scripts/kconfig/merge_config.sh").is_file():
        raise SetupError(f"{src} is not a Linux source tree (no scripts/kconfig/merge_config.sh).",
                         hint="Point KERNEL_SRC at the top of a kernel source tree.")
    return Tree(src, cfg.kernel_build or src)  # make creates an O= directory itself


def kconfig(cfg: Config, minimal: bool, fragment: Path = FRAGMENT) -> Path:
    """Merge the fragment into the tree's .config; minimal starts from tinyconfig."""
    tree = tree_of(cfg)
    command.require("make", "make")
    config = tree.build / ".config"
    if minimal:
        _run(tree.make("tinyconfig"), "make tinyconfig")
    elif not config.is_file():
        raise SetupError(f"{tree.build} has no .config to merge into.",
                         hint="Configure the kernel first, or use --minimal for a tinyconfig "
                         "base.")
    _run([str(tree.src / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(tree.build),
          str(config), str(fragment)], "merge_config.sh")
    _run(tree.make("olddefconfig"), "make olddefconfig")
    merged = read_config(config)
    dropped = [o for o in required_options(fragment) if merged.get(o) not in ("y", "m")]
    if dropped:
        raise SetupError(f"olddefconfig dropped {', '.join(dropped)} from {config}.",
                         hint="Their dependencies are missing; enable them with menuconfig.")
    return config


@dataclasses.dataclass(frozen=True)
class BuildResult:
    ok: bool
    seconds: float
    log: Path


def build(cfg: Config, log: Path, extra: tuple[str, ...] = ()) -> BuildResult:
    """bzImage, plus modules when the config has them; the output goes to `log`."""
    tree = tree_of(cfg)
    command.require("make", "make")
    targets = ["bzImage"]
    if read_config(tree.build / ".config").get("CONFIG_MODULES") == "y":
        targets.append("modules")
    began = time.monotonic()
    code = command.run_to_file(tree.make(*targets, jobs=cfg.jobs, extra=extra), log)
    return BuildResult(code == 0, time.monotonic() - began, log)


def _run(argv: list[str], what: str) -> None:
    command.run(argv, error=SetupError(f"{what} failed."))
