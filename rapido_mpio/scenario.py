"""Scenarios: one file each, cut/scenarios/<name>.sh.

The file is the guest's steps (POSIX sh, run by /init with /usr/lib/mpio/lib.sh loaded),
headed by its declarations in comment lines that start with `#:` (YAML):

    #: description: what the scenario proves
    #: topology: {luns: 1, paths: 2}      # LUNs x paths per LUN (1-16 x 1-8; lun_mib: 1-1048576)
    #: multipath: |                       # becomes /etc/multipath/conf.d/scenario.conf
    #:   defaults { no_path_retry queue }
    #: steps: {fault: 35}                 # deadline of each `mpio_step NAME`, in seconds
    #: env: {DATA_MIB: 4}                 # exported to the steps
    #: expect_fail: [io_after_fault]      # a negative control: the checks that must FAIL
    #: kernel_log_allow: [regex]          # kernel messages provoked on purpose
    #: lun_errors:                        # a LUN failing by itself, on every path (blkdebug)
    #:   - {lun: 0, op: write, errno: ENOSPC, sector: 786432, once: false}
    #: extends: failover                  # a variant: another scenario's steps, with the
    #:                                    # declarations here laid over its own

Faults are asked for from the steps (`mpio_fault fail_path 0 1`); the host knows them by
name (faults.py), so a scenario needs no host-side table.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from rapido_mpio.config import MAX_SECONDS
from rapido_mpio.errors import SetupError
from rapido_mpio.inputs import check_printable, excerpt, load_yaml, read_text
from rapido_mpio.topology import MAX_LUN_ERRORS, MAX_LUN_MIB, LunError, Shape

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STEP_WITHOUT_SECONDS = re.compile(r"^\s*mpio_step\s+(\w+)\s*(?:#.*)?$", re.M)
XFS_MIN_MIB = 300  # mkfs.xfs (xfsprogs 6.x) refuses smaller filesystems
SUFFIX = ".sh"
KEYS = {"description", "topology", "multipath", "steps", "env", "expect_fail",
        "kernel_log_allow", "extends", "image", "min_disk_mib", "lun_errors"}
LUN_ERROR_KEYS = {"lun", "op", "errno", "sector", "once"}


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: Path  # the file the steps come from (a variant's base, for a variant)
    steps_script: str
    shape: Shape = Shape()
    multipath: str = ""  # conf.d snippet; the base layer's multipath.conf has the defaults
    steps: dict[str, float] = dataclasses.field(default_factory=dict)  # step -> deadline
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    expect_fail: tuple[str, ...] = ()  # non-empty: a negative control
    kernel_log_allow: tuple[str, ...] = ()
    image: str = "mpio"  # manifest name: cut/<image>.yaml
    min_disk_mib: int = XFS_MIN_MIB  # the smallest LUN the scenario works with
    lun_errors: tuple[LunError, ...] = ()  # LUNs that fail I/O by themselves

    def guest_env(self) -> dict[str, str]:
        """What the steps see: env, the step deadlines and the topology's shape."""
        out = dict(self.env)
        out.update({f"MPIO_STEP_{k}": f"{v:g}" for k, v in self.steps.items()})
        out.update({"MPIO_LUNS": str(self.shape.luns), "MPIO_PATHS": str(self.shape.paths),
                    "MPIO_SCENARIO": self.name})
        return out

    def selectors(self) -> set[str]:
        """The path selectors its multipath settings name."""
        return set(re.findall(r'^\s*path_selector\s+"?([\w-]+)', self.multipath, re.M))

    def with_env(self, overrides: str) -> Scenario:
        """The scenario with env values from the command line (NAME=VALUE,NAME=VALUE); only
        names it declares, so a typo cannot pass unnoticed."""
        env = dict(self.env)
        for item in filter(None, (i.strip() for i in overrides.split(","))):
            name, eq, value = item.partition("=")
            if not eq or name not in env:
                raise SetupError(f"Scenario {self.name} has no env {excerpt(name)} to set.",
                                 hint="Its env: " + (", ".join(sorted(env)) or "none") +
                                 "; write NAME=VALUE,NAME=VALUE.")
            env[name] = value
        return dataclasses.replace(self, env=env)

    def with_policy(self, selector: str, grouping: str) -> Scenario:
        """The scenario under another path selector or grouping policy ("scenario": keep its
        own). An overrides section, since it beats both the defaults and any device entry
        multipath-tools' built-in hardware table has for the disk."""
        lines = [f'\tpath_selector "{selector} 0"' if selector != "scenario" else "",
                 f"\tpath_grouping_policy {grouping}" if grouping != "scenario" else ""]
        body = "".join(ln + "\n" for ln in lines if ln)
        if not body:
            return self
        return dataclasses.replace(self, multipath=self.multipath + "overrides {\n" + body + "}\n")

    def check_settings(self, disk_mib: int) -> None:
        """Refuse, before any boot, settings this scenario cannot work with: a run that fails
        on them would blame the kernel for a setup mistake."""
        mib = self.shape.lun_mib or disk_mib
        if mib < self.min_disk_mib:
            raise SetupError(f"A {mib} MiB LUN is too small for scenario {self.name}: "
                             f"it needs {self.min_disk_mib} MiB (XFS's minimum is "
                             f"{XFS_MIN_MIB}).", hint=f"Set disk_size to {self.min_disk_mib} "
                             "or more.")
        for e in self.lun_errors:
            problems = e.problems(self.shape, mib)
            if problems:
                raise SetupError(f"lun_errors in scenario {self.name}: {problems[0]} "
                                 f"of {mib} MiB.", hint="Set disk_size larger, or the sector "
                                 "lower.")


def names(cut_dir: Path) -> list[str]:
    return sorted(p.stem for p in (cut_dir / "scenarios").glob("*" + SUFFIX))


def load(cut_dir: Path, name: str) -> Scenario:
    return _load(cut_dir, name, ())


def _load(cut_dir: Path, name: str, seen: tuple[str, ...]) -> Scenario:
    path = cut_dir / "scenarios" / f"{name}{SUFFIX}"
    if not _NAME.match(name) or not path.is_file():
        raise SetupError(f"No scenario {excerpt(name)} in {cut_dir / 'scenarios'}.",
                         hint="Known scenarios: " + (", ".join(names(cut_dir)) or "none") + ".")
    if name in seen:
        raise SetupError(f"Scenario {path} extends itself (through {' -> '.join(seen)}).")
    text = read_text(path, "scenario file", "Fix or remove the file.")
    header = _header(text, path)
    unknown = sorted(str(k) for k in set(header) - KEYS)
    if unknown:
        raise SetupError(f"Unknown key {excerpt(unknown[0])} in the #: header of {path}.",
                         hint="Known keys: " + ", ".join(sorted(KEYS)) + ".")
    base = None
    if "extends" in header:
        base = _load(cut_dir, _name(header["extends"], "extends", path), (*seen, name))
    own_steps = _has_steps(text)
    if base is None and not own_steps:
        raise SetupError(f"Scenario {path} has no steps.",
                         hint="Write its steps below the #: header, or extend another "
                         "scenario (#: extends: NAME).")
    if base is not None and own_steps:
        raise SetupError(f"Scenario {path} both extends {header['extends']} and has steps "
                         "of its own.", hint="A variant only declares; move the steps.")
    merged = _merge(base, header)
    sc = Scenario(
        name=name,
        description=_text(merged.get("description"), "description", path),
        source=base.source if base else path,
        steps_script=base.steps_script if base else text,
        shape=_shape(merged.get("topology"), path),
        multipath=_text(merged.get("multipath", ""), "multipath", path),
        steps=_deadlines(merged.get("steps"), path),
        env=_env(merged.get("env"), path),
        expect_fail=_strings(merged.get("expect_fail"), "expect_fail", path),
        kernel_log_allow=_patterns(merged.get("kernel_log_allow"), path),
        image=_name(merged.get("image", "mpio"), "image", path),
        min_disk_mib=_mib(merged.get("min_disk_mib", XFS_MIN_MIB), "min_disk_mib", path),
    )
    sc = dataclasses.replace(sc, lun_errors=_lun_errors(merged.get("lun_errors"), sc.shape,
                                                        path))
    if not sc.description:
        raise SetupError(f"Scenario {path} has no description.",
                         hint="Say what it proves: #: description: ...")
    missing = sorted(set(_STEP_WITHOUT_SECONDS.findall(sc.steps_script)) - set(sc.steps))
    if missing:
        raise SetupError(f"Scenario {path} has step {missing[0]} without a deadline.",
                         hint=f"Declare it: #: steps: {{{missing[0]}: SECONDS}}.")
    return sc


def _header(text: str, path: Path) -> dict[str, Any]:
    """The YAML in the file's leading comment lines that start with #:."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("#:"):
            lines.append(line[3:] if line.startswith("#: ") else line[2:])
    data = load_yaml("\n".join(lines), f"The #: header of {path}", "Fix its syntax.") \
        if lines else {}
    if not isinstance(data, dict):
        raise SetupError(f"The #: header of {path} must be a YAML mapping (key: value).")
    return data


def _has_steps(text: str) -> bool:
    return any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines())


def _merge(base: Scenario | None, header: dict[str, Any]) -> dict[str, Any]:
    """A variant's declarations over its base's: mappings merge key by key, the rest
    replaces."""
    if base is None:
        return header
    merged: dict[str, Any] = {
        "description": base.description, "multipath": base.multipath,
        "topology": dataclasses.asdict(base.shape), "steps": dict(base.steps),
        "env": dict(base.env), "expect_fail": list(base.expect_fail),
        "kernel_log_allow": list(base.kernel_log_allow), "image": base.image,
        "min_disk_mib": base.min_disk_mib,
        "lun_errors": [{"lun": e.lun, "op": e.operation, "errno": e.errno, "sector": e.sector,
                        "once": e.once} for e in base.lun_errors],
    }
    for key, value in header.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _text(value: object, key: str, path: Path) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SetupError(f"{key} in scenario {path} must be text.")
    return value.strip() + ("\n" if key == "multipath" and value.strip() else "")


def _name(value: object, key: str, path: Path) -> str:
    """A scenario's or an image's name: it becomes a file name."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise SetupError(f"{key} in scenario {path} must be a name (letters, digits, _.-), "
                         f"not {excerpt(value)}.")
    return value


def _shape(value: object, path: Path) -> Shape:
    value = value or {}
    if not isinstance(value, dict) or not set(value) <= {"luns", "paths", "lun_mib"} or not \
            all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()
                if v is not None):
        raise SetupError(f"topology in scenario {path} must be {{luns: N, paths: N}} "
                         "(and lun_mib: N), whole numbers.")
    shape = Shape(**value)
    problems = shape.problems()
    if problems:
        raise SetupError(f"topology in scenario {path}: {problems[0]}.")
    return shape


def _deadlines(value: object, path: Path) -> dict[str, float]:
    value = value or {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and _IDENT.match(k) and isinstance(v, (int, float))
            and not isinstance(v, bool) and 0 < v <= MAX_SECONDS for k, v in value.items()):
        raise SetupError(f"steps in scenario {path} must map step names to seconds "
                         f"(more than 0, at most {MAX_SECONDS}).")
    return {k: float(v) for k, v in value.items()}


def _env(value: object, path: Path) -> dict[str, str]:
    value = value or {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and _IDENT.match(k) for k in value):
        raise SetupError(f"env in scenario {path} must map NAME: value.")
    if any(k.startswith("MPIO_") for k in value):
        raise SetupError(f"env in scenario {path} sets an MPIO_ name, which rapido-mpio sets.",
                         hint="Declare the topology and the steps under their own keys.")
    for k, v in value.items():
        if not isinstance(v, str | int | float):
            raise SetupError(f"env {k} in scenario {path} must be text or a number, not "
                             f"{excerpt(v)}.")
        check_printable(str(v), f"env {k} in scenario {path}")
    return {k: str(v) for k, v in value.items()}


def _strings(value: object, key: str, path: Path) -> tuple[str, ...]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SetupError(f"{key} in scenario {path} must be a list of names.")
    return tuple(value)


def _patterns(value: object, path: Path) -> tuple[str, ...]:
    allow = _strings(value, "kernel_log_allow", path)
    for pattern in allow:
        try:
            re.compile(pattern)
        except re.error as e:
            raise SetupError(f"kernel_log_allow in scenario {path}: {excerpt(pattern)} is not a "
                             f"regular expression ({e}).") from None
    return allow


def _mib(value: object, key: str, path: Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LUN_MIB:
        raise SetupError(f"{key} in scenario {path} must be a whole number of MiB from 1 to "
                         f"{MAX_LUN_MIB}.")
    return value


def _lun_errors(value: object, shape: Shape, path: Path) -> tuple[LunError, ...]:
    """[{lun: L, op: read|write, errno: NAME, sector: S, once: BOOL}, ...]"""
    value = value or []
    what = (f"lun_errors in scenario {path} must be a list of {{lun: N, op: read|write, "
            "errno: ENAME, sector: N}} (and once: true|false)")
    if not isinstance(value, list):
        raise SetupError(what + ".")
    out = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= LUN_ERROR_KEYS or \
                not {"lun", "op", "errno", "sector"} <= set(item):
            raise SetupError(f"{what}, not {excerpt(item)}.")
        lun, sector, once = item["lun"], item["sector"], item.get("once", False)
        if not (isinstance(lun, int) and isinstance(sector, int) and isinstance(once, bool)
                and not isinstance(lun, bool) and not isinstance(sector, bool)
                and isinstance(item["op"], str) and isinstance(item["errno"], str)):
            raise SetupError(f"{what}, not {excerpt(item)}.")
        error = LunError(lun, item["op"], item["errno"], sector, once)
        problems = error.problems(shape)
        if problems:
            raise SetupError(f"lun_errors in scenario {path}: {problems[0]}.")
        out.append(error)
    for lun in range(shape.luns):
        if sum(e.lun == lun for e in out) > MAX_LUN_ERRORS:
            raise SetupError(f"lun_errors in scenario {path}: more than {MAX_LUN_ERRORS} "
                             f"for LUN {lun}.")
    return tuple(out)
