"""Settings: one table drives the YAML file, the environment and the command line.

Precedence, lowest first: built-in default, config file, environment, command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rapido_mpio.errors import SetupError
from rapido_mpio.inputs import check_printable, excerpt, load_yaml, printable, read_text
from rapido_mpio.topology import MAX_LUN_MIB

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE_NAME = "rapido-mpio.yaml"
MIN_MEMORY_MIB = 256  # the image unpacks into RAM, and the guest runs XFS and multipathd
MAX_SECONDS = 86_400  # a timeout or a step's deadline: a day is past any real wait


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rapido-mpio"


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # str, int, float, Path; Path | None when default is None
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # extra environment names besides RAPIDO_MPIO_<NAME>
    bounds: tuple[int, int] = (1, 0)  # an int's or a float's least and greatest value

    @property
    def full_help(self) -> str:
        """The help, with a number's bounds: the file, the env and --help say the same."""
        if self.kind not in (int, float):
            return self.help
        return f"{self.help} From {self.bounds[0]} to {self.bounds[1]}."

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_names(self) -> tuple[str, ...]:
        return ("RAPIDO_MPIO_" + self.name.upper(), *self.env)

    def parse(self, value: object, where: str) -> Any:
        """Turn a value from a file, the environment or a flag into the setting's type."""
        if value is None or (isinstance(value, str) and value == "" and self.default is None):
            return None
        bad = SetupError(
            f"{self.name} in {where} must be {self.describe_type()}, not {excerpt(value)}.",
            hint=f"Fix {self.name} in {where}.",
        )
        if self.kind is bool:
            words = {"1": True, "true": True, "yes": True, "on": True,
                     "0": False, "false": False, "no": False, "off": False}
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in words:
                return words[value.lower()]
            raise bad
        if self.kind is Path:
            if not isinstance(value, str | Path):
                raise bad
            return Path(os.path.expanduser(check_printable(str(value), f"{self.name} in {where}")))
        if self.kind is int:
            if isinstance(value, bool):
                raise bad
            try:
                number = int(value) if isinstance(value, str | int) else None
            except ValueError:
                number = None
            if number is None or not self.bounds[0] <= number <= self.bounds[1]:
                raise bad
            return number
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise bad
            try:
                seconds = float(value)
            except ValueError:
                raise bad from None
            if not self.bounds[0] <= seconds <= self.bounds[1]:  # nan and inf too
                raise bad
            return seconds
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise bad
        text = str(value)
        if self.choices and text not in self.choices:
            raise bad
        return check_printable(text, f"{self.name} in {where}")

    def describe_type(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return {
            bool: "true or false",
            Path: "a path",
            int: f"a whole number from {self.bounds[0]} to {self.bounds[1]}",
            float: f"a number of seconds from {self.bounds[0]} to {self.bounds[1]}",
        }.get(self.kind, "a string")


SETTINGS: tuple[Setting, ...] = (
    Setting("kernel_src", Path, None,
            "Kernel tree to test (source tree, or its build directory). Unset: the kernel tree "
            "you stand in, if the current directory is one, else the built-in default "
            "kernel.", env=("KERNEL_SRC",)),
    Setting("kernel_build", Path, None,
            "Build directory of an out-of-tree build (make O=...). Unset: kernel_src itself.",
            env=("KBUILD_OUTPUT",)),
    Setting("default_kernel", str, "linux-image-amd64",
            "Debian package of the built-in default kernel; downloaded and unpacked into the "
            "cache, never installed."),
    Setting("scenario", str, "failover", "Scenario to run: cut/scenarios/<name>.sh."),
    Setting("scenario_env", str, "",
            "Overrides of the scenario's env, NAME=VALUE,NAME=VALUE (SEED=1234 replays "
            "offline-one-by-one's order)."),
    Setting("path_selector", str, "scenario",
            "dm-multipath path selector for the run (multipath.conf overrides); scenario: "
            "what the scenario and the image's multipath.conf say (round-robin).",
            choices=("scenario", "round-robin", "queue-length", "service-time",
                     "historical-service-time")),
    Setting("path_grouping", str, "scenario",
            "multipathd path_grouping_policy for the run; scenario: what the scenario and "
            "the image's multipath.conf say (multibus).",
            choices=("scenario", "multibus", "failover", "group_by_serial")),
    Setting("cut_dir", Path, REPO_ROOT / "cut", "Directory of image manifests and scenarios."),
    Setting("templates_dir", Path, REPO_ROOT / "templates", "Directory of Jinja2 templates."),
    Setting("output_dir", Path, REPO_ROOT / "mpio-out",
            "Where the image and each run's artifacts are written (never into a kernel "
            "tree unless asked)."),
    Setting("cache_dir", Path, _cache_home(),
            "Cached default kernel, image layers and staged module trees."),
    Setting("qemu", str, "qemu-system-x86_64", "QEMU binary (name on PATH, or a path)."),
    Setting("accel", str, "auto",
            "auto: KVM where /dev/kvm works and the CPU has vmx/svm, else TCG.",
            choices=("auto", "kvm", "tcg")),
    Setting("memory", int, 1024, "Guest memory in MiB.", bounds=(MIN_MEMORY_MIB, 1 << 20)),
    Setting("cpus", int, 2, "Guest CPUs (QEMU's pc machine takes 255 at most).",
            bounds=(1, 255)),
    Setting("disk_size", int, 320, "Size of the shared LUN in MiB (XFS wants 300 at least).",
            bounds=(1, MAX_LUN_MIB)),
    Setting("boot_timeout", float, 120.0,
            "Seconds from QEMU start until the scenario starts; past it the kernel counts as "
            "untestable (125).", bounds=(1, MAX_SECONDS)),
    Setting("scenario_timeout", float, 120.0,
            "Seconds from scenario start until the verdict; past it the run FAILs.",
            bounds=(1, MAX_SECONDS)),
    Setting("compression", str, "none", "Compression of the image layers.",
            choices=("none", "zstd")),
    Setting("kernel_cmdline", str, "", "Extra kernel command line arguments."),
    Setting("console", bool, False,
            "Also stream the guest's serial console to stderr while it runs."),
    Setting("jobs", int, os.cpu_count() or 1, "Parallel jobs for kernel builds.",
            bounds=(1, 4096)),
    Setting("vms", int, None,
            "VMs at a time in a matrix and a --repeat. Unset: host CPUs (TCG runs a guest's "
            "vCPUs in one host thread; under KVM, host CPUs / guest CPUs), as far as memory "
            "allows.",
            bounds=(1, 256)),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Config:
    kernel_src: Path | None
    kernel_build: Path | None
    default_kernel: str
    scenario: str
    scenario_env: str
    path_selector: str
    path_grouping: str
    cut_dir: Path
    templates_dir: Path
    output_dir: Path
    cache_dir: Path
    qemu: str
    accel: str
    memory: int
    cpus: int
    disk_size: int
    boot_timeout: float
    scenario_timeout: float
    compression: str
    kernel_cmdline: str
    console: bool
    jobs: int
    vms: int | None
    config_file: Path | None = None

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; unset flags stay None so lower layers show through."""
    group = parser.add_argument_group("settings (also in the config file and environment)")
    group.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help=f"YAML config file (default: ./{CONFIG_FILE_NAME} if present).")
    for s in SETTINGS:
        if s.kind is bool:  # a switch on the command line; the file and env say true/false
            group.add_argument(s.flag, dest=s.name, default=None, action="store_const",
                               const="true", help=f"{s.full_help} [env {s.env_names[0]}]")
            continue
        group.add_argument(
            s.flag, dest=s.name, default=None, metavar=s.name.upper(),
            choices=s.choices or None,
            help=f"{s.full_help} [env {s.env_names[0]}]",
        )


def _read_file(path: Path) -> dict[str, object]:
    shown = printable(str(path))
    data = load_yaml(read_text(path, "config file", "Check the path given with --config."),
                     f"Config file {shown}", "Fix the syntax or remove the file.")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SetupError(f"Config file {shown} must be a mapping of setting: value.",
                         hint="See the configuration reference in README.md.")
    for key in data:
        if key not in SETTINGS_BY_NAME:
            raise SetupError(f"Unknown key {excerpt(key)} in config file {shown}.",
                             hint="Known keys: " + ", ".join(SETTINGS_BY_NAME) + ".")
    return data


def load(cli: Mapping[str, object] | None = None,
         environ: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> Config:
    """Merge defaults, file, environment and CLI values into one Config."""
    cli = dict(cli or {})
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()

    config_file: Path | None = None
    explicit = cli.pop("config", None) or environ.get("RAPIDO_MPIO_CONFIG")
    if explicit:
        config_file = Path(str(explicit))
        if not config_file.is_file():
            raise SetupError(f"Config file {printable(str(config_file))} does not exist.",
                             hint="Give an existing file with --config or RAPIDO_MPIO_CONFIG.")
    elif (cwd / CONFIG_FILE_NAME).is_file():
        config_file = cwd / CONFIG_FILE_NAME
    file_values = _read_file(config_file) if config_file else {}

    values: dict[str, Any] = {}
    for s in SETTINGS:
        value = s.default
        if file_values.get(s.name) is not None:  # `key:` alone, or null: not set here
            value = s.parse(file_values[s.name], f"config file {printable(str(config_file))}")
        for env_name in reversed(s.env_names):  # RAPIDO_MPIO_X wins over the short alias
            if env_name in environ and environ[env_name] != "":
                value = s.parse(environ[env_name], f"environment variable {env_name}")
                break
        if cli.get(s.name) is not None:
            value = s.parse(cli[s.name], f"option {s.flag}")
        values[s.name] = value
    if values["kernel_src"] is None and values["kernel_build"] is None \
            and is_kernel_tree(cwd):
        values["kernel_src"] = cwd  # as virtme-ng's vng: test the tree you stand in
    return Config(**values, config_file=config_file)


def is_kernel_tree(path: Path) -> bool:
    """A Linux source tree (Kconfig, scripts/kconfig) or a build directory (the .config and
    include/config that a configured tree or an O= directory has)."""
    if not (path / "Makefile").is_file():
        return False
    source = (path / "Kconfig").is_file() and (path / "scripts" / "kconfig").is_dir()
    build = (path / ".config").is_file() and (path / "include" / "config").is_dir()
    return source or build


def render_defaults() -> str:
    """The documented defaults as a YAML file, every key commented out."""
    lines = ["# rapido-mpio configuration. Every key is optional; shown are the defaults.",
             "# Precedence: this file < environment (RAPIDO_MPIO_<KEY>) < command line.", ""]
    for s in SETTINGS:
        lines.append(f"# {s.full_help}")
        shown = _DYNAMIC[s.name] if s.name in _DYNAMIC else _show(s.default)
        lines.append(f"# {s.name}: {shown}")
        lines.append("")
    return "\n".join(lines)


_DYNAMIC: dict[str, str] = {
    "output_dir": "<repository>/mpio-out",
    "cut_dir": "<repository>/cut",
    "templates_dir": "<repository>/templates",
    "cache_dir": "~/.cache/rapido-mpio",
    "jobs": "<number of CPUs>",
    "vms": "<host CPUs (KVM: / guest CPUs), as memory allows>",
}


def _show(value: object) -> str:
    if value is None:
        return "null"
    return str(yaml.safe_dump(str(value) if isinstance(value, Path) else value,
                              default_flow_style=True)).strip().removesuffix("...").strip()


