"""Command line: cut, boot, run (cut + boot, the git bisect run entry point), defaults.

Exit codes: 0 PASS, 1 FAIL, 125 untestable kernel (bisect skip), 255 broken setup.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from rapido_mpio import config
from rapido_mpio.errors import ExitCode, Interrupted, MpioError


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 255, not argparse's 2: under git bisect run, 2 would mean "bad"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.SETUP), f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
        ("kconfig", "merge kconfig/mpio.config into the tree's .config (merge_config.sh)"),
        ("bisect", "git bisect a kernel tree: build, cut and boot each step"),
        ("matrix", "run every combination a matrix file lists (scenario x selector x "
                   "grouping x fault x kernel), several VMs at a time, and report"),
        ("merge", "join the matrix.json of several --shard runs into one report"),
        ("defaults", "print the documented configuration file with every default"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "kconfig":
            p.add_argument("--minimal", action="store_true",
                           help="start from `make tinyconfig` (fast to build, boots fast) "
                           "instead of the existing .config")
        if name in ("boot", "run", "bisect"):
            p.add_argument("--repeat", type=_count(1), default=1, metavar="N",
                           help="boot the scenario N times on the same image and print the "
                           "distribution; any FAIL makes the result FAIL (an intermittent "
                           "regression is still a regression)")
        if name == "matrix":
            p.add_argument("file", nargs="?", type=Path, metavar="FILE",
                           help="the matrix file (default: cut/matrix.yaml)")
            p.add_argument("--list", action="store_true",
                           help="print the combinations, one id per line, and run nothing")
            p.add_argument("--shard", metavar="I/N",
                           help="run only slice I of N (stable: the same on every machine)")
            p.add_argument("--coverage", action="store_true",
                           help="build the kernel tree with gcov on dm-mpath.c and the path "
                           "selectors (a copy in the cache; your build is only read), run the "
                           "matrix on it and report the functions and lines it reached")
        if name == "merge":
            p.add_argument("parts", nargs="+", type=Path, metavar="MATRIX_JSON",
                           help="the shards' matrix.json files")
        if name in ("matrix", "merge"):
            p.add_argument("--kcidb", type=Path, metavar="FILE",
                           help="also write the results as KernelCI KCIDB JSON")
            p.epilog = ("Exit codes: 0 every combination as expected, 1 any FAIL (or a "
                        "negative control that did not fail as declared), 125 untestable "
                        "combinations and no FAIL, 255 broken setup.")
        if name == "bisect":
            p.add_argument("--good", required=True, metavar="REV", help="a commit that PASSes")
            p.add_argument("--bad", required=True, metavar="REV", help="a commit that FAILs")
            p.add_argument("--confirm", type=_count(0), default=3, metavar="M",
                           help="after git names the first bad commit, run it and its parent "
                           "M times each (default 3; 0: do not confirm)")
            p.epilog = ("Arguments after `--` go to make, e.g. -- CC=clang. Exit codes: 0 first "
                        "bad commit found (and confirmed), 2 only skipped commits left, 3 a "
                        "first bad commit that the confirmation runs do not bear out, 255 "
                        "broken setup.")
        if name != "defaults":
            config.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: tuple[str, ...] = ()
    if "--" in argv:  # bisect: what follows goes to make
        extra = tuple(argv[argv.index("--") + 1:])
        argv = argv[:argv.index("--")]
    args = _parser().parse_args(argv)
    if args.command == "defaults":
        print(config.render_defaults())
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        cfg = config.load(vars(args))
        from rapido_mpio import runner

        if args.command == "kconfig":
            from rapido_mpio import kbuild

            written = kbuild.kconfig(cfg, minimal=args.minimal)
            print(f"rapido-mpio: merged kconfig/mpio.config into {written}", file=sys.stderr)
            return 0
        if args.command == "bisect":
            from rapido_mpio import bisect

            result = bisect.bisect(cfg, args.good, args.bad, extra, repeat=args.repeat,
                                   confirm=args.confirm)
            bisect.print_result(result, sys.stdout)
            return bisect.exit_code(result)
        if args.command == "matrix" and args.coverage and not args.list:
            return int(runner.coverage(cfg, args.file, args.shard, args.kcidb))
        if args.command == "matrix":
            return int(runner.matrix(cfg, args.file, args.shard, args.list, args.kcidb))
        if args.command == "merge":
            return int(runner.merge(cfg, args.parts, args.kcidb))
        if args.command == "cut":
            runner.cut(cfg)
            return 0
        if args.command == "run":
            runner.cut(cfg)
        return int(runner.repeat(cfg, args.repeat).exit_code)
    except MpioError as e:
        print(f"rapido-mpio: {e}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt as e:  # what it stopped, when something was running
        stopped = f"; {e.stopped}" if isinstance(e, Interrupted) else ""
        print(f"rapido-mpio: interrupted{stopped}.", file=sys.stderr)
        return int(ExitCode.SETUP)
    except Exception:  # a bug in rapido-mpio: abort a bisect rather than blame the kernel
        traceback.print_exc()
        print("rapido-mpio: internal error (above); please report it.", file=sys.stderr)
        return int(ExitCode.SETUP)


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"want a whole number of at least {least}, "
                                             f"not {text!r}")
        return int(text)
    return parse


def _terminate(signum: int, frame: FrameType | None) -> None:
    # the first SIGINT or SIGTERM unwinds through the cleanup; later ones must not cut that
    # cleanup short (a matrix child gets Ctrl-C from the terminal and SIGTERM from its
    # parent), or a QEMU could outlive its run. The cleanup is bounded in time.
    # A handler that does nothing, not SIG_IGN: a signal the kernel delivered before this
    # ran (a forked --repeat run gets the terminal's SIGINT and its parent's SIGTERM at
    # once) finds no Python handler under SIG_IGN, and Python prints "Signal 15 ignored due
    # to race condition" with a traceback on the user's terminal.
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    raise KeyboardInterrupt


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass
