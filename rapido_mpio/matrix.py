"""A matrix file (cut/matrix.yaml) -> the combinations it lists, and a stable shard of them.

    kernels: [config]          # config: the kernel the settings name; default: the built-in
                               # one; or a tree, PATH or SRC:BUILD
    axes:                      # every combination of these
      scenario: [failover, reinstate]
      selector: [round-robin, service-time]
      grouping: [multibus]
      fault: [fail_path, offline]   # only for scenarios that declare env FAULT
    exclude:                   # drop the combinations that match every key given
      - {scenario: reinstate, grouping: failover}
    include:                   # add combinations (on every kernel unless one is named)
      - {scenario: all-paths-lost}
      - {scenario: offline-one-by-one, env: {KEEP: 2}}

As CI matrices do it: the product of the axes, less the exclusions, plus the inclusions.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

from rapido_mpio import scenario
from rapido_mpio.config import SETTINGS_BY_NAME, Config
from rapido_mpio.errors import SetupError
from rapido_mpio.inputs import check_printable, excerpt, load_yaml, printable, read_text
from rapido_mpio.results import Combination

AXES = ("scenario", "selector", "grouping", "fault")
KEYS = {"kernels", "axes", "exclude", "include"}
FAULT_ENV = "FAULT"  # the env a scenario declares when the way the path dies is a choice
MAX_SHARDS = 10_000


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    id: str  # short, unique in the matrix: "default" or the tree's directory name
    src: Path | None  # None: the built-in default kernel
    build: Path | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    file: Path
    kernels: tuple[KernelSpec, ...]
    combinations: tuple[Combination, ...]

    def shard(self, index: int, count: int) -> Plan:
        """Slice I of N (1-based): every Nth combination in the file's order, so the slices
        are even and the same on every machine that reads the same file."""
        picked = self.combinations[index - 1::count]
        used = {c.kernel for c in picked}
        return dataclasses.replace(self, combinations=picked,
                                   kernels=tuple(k for k in self.kernels if k.id in used))


def parse_shard(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"([0-9]{1,5})/([0-9]{1,5})", text)
    if not found or not 1 <= int(found[1]) <= int(found[2]) <= MAX_SHARDS:
        raise SetupError(f"--shard {excerpt(text)} is not I/N with 1 <= I <= N <= "
                         f"{MAX_SHARDS}.",
                         hint="Write e.g. --shard 2/4 for the second of four slices.")
    return int(found[1]), int(found[2])


def load(path: Path, cfg: Config) -> Plan:
    text = read_text(path, "matrix file", "Give an existing file, or none for cut/matrix.yaml.")
    data = load_yaml(text, f"Matrix file {printable(str(path))}", "Fix its syntax.")
    if not isinstance(data, dict):
        raise SetupError(f"Matrix file {path} must be a mapping (kernels, axes, exclude, "
                         "include).")
    _known(data, KEYS, f"matrix file {path}")
    kernels = _kernels(data.get("kernels", ["config"]), path, cfg)
    axes = data.get("axes") or {}
    if not isinstance(axes, dict):
        raise SetupError(f"axes in matrix file {path} must map an axis to a list of values.")
    _known(axes, set(AXES), f"axes in matrix file {path}")
    values = {a: _values(axes.get(a), a, path) for a in AXES}
    excludes = [_entry(e, path, "exclude") for e in _list(data.get("exclude"), "exclude", path)]
    includes = [_entry(e, path, "include") for e in _list(data.get("include"), "include", path)]

    scenarios: dict[str, scenario.Scenario] = {}

    def load_scenario(name: str) -> scenario.Scenario:
        if name not in scenarios:
            scenarios[name] = scenario.load(cfg.cut_dir, name)
        return scenarios[name]

    combos: list[Combination] = []
    if values["scenario"]:
        for sc_name, sel, grp, fault in itertools.product(
                values["scenario"], values["selector"] or [None], values["grouping"] or [None],
                values["fault"] or [None]):
            if fault is not None and FAULT_ENV not in load_scenario(str(sc_name)).env:
                fault = None  # the axis does not apply to this scenario
            for k in kernels:
                cell = {"scenario": sc_name, "selector": sel, "grouping": grp, "fault": fault,
                        "kernel": k.id}
                if not any(all(cell.get(key) == v for key, v in ex.items()) for ex in excludes):
                    combos.append(_combination(cell, k.id, {}, path))
    for inc in includes:
        if "scenario" not in inc:
            raise SetupError(f"An include in matrix file {path} names no scenario.",
                             hint="Write - {scenario: NAME, ...}.")
        named = inc.get("kernel")
        targets = [k for k in kernels if named is None or k.id == named]
        if not targets:
            raise SetupError(f"An include in matrix file {path} names kernel {excerpt(named)}, "
                             "which is not in its kernels.",
                             hint="Kernel names: " + ", ".join(k.id for k in kernels) + ".")
        combos += [_combination(inc, k.id, inc.get("env") or {}, path) for k in targets]

    unique = list(dict.fromkeys(combos))  # an include may repeat a product cell
    for c in unique:
        _check(c, load_scenario(c.scenario), path)
    if not unique:
        raise SetupError(f"Matrix file {path} lists no combination.",
                         hint="Give axes.scenario, or include entries.")
    return Plan(path, kernels, tuple(unique))


def _combination(cell: dict[str, Any], kernel: str, env: dict[str, Any],
                 path: Path) -> Combination:
    def word(value: object, key: str) -> str:
        """A value the child run gets in --scenario-env NAME=VALUE,NAME=VALUE: no comma."""
        what = f"{key} in matrix file {printable(str(path))}"
        text = check_printable(str(value), what) if isinstance(value, str | int | float) \
            else ","
        if "," in text:
            raise SetupError(f"{what} must be a word or a number without a comma, not "
                             f"{excerpt(value)}.", hint=f"Fix {key}.")
        return text

    def opt(key: str) -> str | None:
        value = cell.get(key)
        return None if value is None else word(value, key)

    return Combination(scenario=str(cell["scenario"]), kernel=kernel, selector=opt("selector"),
                       grouping=opt("grouping"), fault=opt("fault"),
                       env=tuple(sorted((str(k), word(v, f"env {excerpt(k)}"))
                                        for k, v in env.items())))


def _check(c: Combination, sc: scenario.Scenario, path: Path) -> None:
    """Refuse what cannot run before anything boots: a typo must not cost a whole matrix."""
    for key, value in (("selector", c.selector), ("grouping", c.grouping)):
        setting = SETTINGS_BY_NAME[f"path_{key}"]
        if value is not None and value not in setting.choices:
            raise SetupError(f"Matrix file {path}: {key} {excerpt(value)} is not one of "
                             f"{', '.join(setting.choices[1:])}.")
    if c.fault is not None and FAULT_ENV not in sc.env:
        raise SetupError(f"Matrix file {path}: scenario {c.scenario} has no fault to choose "
                         f"(no env {FAULT_ENV}), but an include gives fault {c.fault}.",
                         hint="Drop the fault from that include.")
    for name, _ in c.env:
        if name not in sc.env or name == FAULT_ENV:
            raise SetupError(f"Matrix file {path}: scenario {c.scenario} has no env "
                             f"{excerpt(name)} to set"
                             + (" (use fault:)" if name == FAULT_ENV else "") + ".",
                             hint="Its env: " + (", ".join(sorted(sc.env)) or "none") + ".")


def _kernels(value: object, path: Path, cfg: Config) -> tuple[KernelSpec, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SetupError(f"kernels in matrix file {path} must be a list: config, default, "
                         "or kernel trees (PATH or SRC:BUILD).")
    specs: list[KernelSpec] = []
    for item in value:
        check_printable(item, f"kernels in matrix file {path}")
        if item == "config":
            src, build = cfg.kernel_src, cfg.kernel_build
            spec = KernelSpec("default", None) if src is None and build is None else \
                KernelSpec(_tree_id(src or build), src, build)
        elif item == "default":
            spec = KernelSpec("default", None)
        else:
            src_text, _, build_text = item.partition(":")
            src = (path.parent / Path(src_text).expanduser()).resolve()
            build = (path.parent / Path(build_text).expanduser()).resolve() \
                if build_text else None
            spec = KernelSpec(_tree_id(src), src, build)
        taken = {s.id for s in specs}
        if spec.id in taken:
            if any(s == spec for s in specs):
                continue
            spec = dataclasses.replace(spec, id=next(
                f"{spec.id}-{n}" for n in itertools.count(2) if f"{spec.id}-{n}" not in taken))
        specs.append(spec)
    return tuple(specs)


def _tree_id(path: Path | None) -> str:
    return (path.resolve().name or "root") if path is not None else "default"


def _known(data: dict[Any, Any], keys: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(data) - keys)
    if unknown:
        raise SetupError(f"Unknown key {excerpt(unknown[0])} in {where}.",
                         hint="Known keys: " + ", ".join(sorted(keys)) + ".")


def _values(value: object, axis: str, path: Path) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SetupError(f"axes.{axis} in matrix file {path} must be a list of names.")
    return list(value)


def _list(value: object, key: str, path: Path) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SetupError(f"{key} in matrix file {path} must be a list of mappings.")
    return value


def _entry(value: object, path: Path, key: str) -> dict[str, Any]:
    allowed = set(AXES) | ({"kernel", "env"} if key == "include" else {"kernel"})
    if not isinstance(value, dict):
        raise SetupError(f"Each {key} in matrix file {path} must be a mapping, e.g. "
                         "{scenario: failover, selector: round-robin}.")
    _known(value, allowed, f"an {key} in matrix file {path}")
    if "env" in value and not isinstance(value["env"], dict):
        raise SetupError(f"env in an include in matrix file {path} must map NAME: value.")
    return value
