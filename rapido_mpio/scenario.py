"""Scenarios: cut/scenarios/<name>.yaml (what the host does) + a guest script (what the guest does).

The guest announces events on the console with `mpio_signal EVENT`; the scenario file maps
each event to monitor commands the host runs before it acknowledges. Nothing here is
scenario-specific: a new scenario is a new pair of files.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from rapido_mpio.config import parse_yaml
from rapido_mpio.errors import SetupError

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
XFS_MIN_MIB = 300  # mkfs.xfs (xfsprogs 6.x) refuses smaller filesystems


@dataclasses.dataclass(frozen=True)
class MonitorCommand:
    """One monitor step: an HMP command line, or a QMP command with arguments."""

    hmp: str | None = None
    qmp: str | None = None
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"hmp": self.hmp, "qmp": self.qmp, "arguments": self.arguments}

    @staticmethod
    def from_json(data: dict[str, Any]) -> MonitorCommand:
        return MonitorCommand(data.get("hmp"), data.get("qmp"), dict(data.get("arguments") or {}))


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    image: str  # manifest name: cut/<image>.yaml
    script: Path
    env: dict[str, str]
    host: dict[str, tuple[MonitorCommand, ...]]  # guest event -> monitor commands
    serials: tuple[str, ...] = ("MPIO", "MPIO")  # one SCSI path per entry
    # kernel messages the scenario provokes on purpose (regexes), not held against the kernel
    kernel_log_allow: tuple[str, ...] = ()
    min_disk_mib: int = XFS_MIN_MIB  # the smallest LUN the scenario works with

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "image": self.image,
            "script": str(self.script), "env": self.env,
            "host": {k: [c.to_json() for c in v] for k, v in self.host.items()},
            "serials": list(self.serials), "kernel_log_allow": list(self.kernel_log_allow),
            "min_disk_mib": self.min_disk_mib,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Scenario:
        return Scenario(
            data["name"], data["description"], data["image"], Path(data["script"]),
            dict(data["env"]),
            {k: tuple(MonitorCommand.from_json(c) for c in v) for k, v in data["host"].items()},
            tuple(data.get("serials", ("MPIO", "MPIO"))),
            tuple(data.get("kernel_log_allow", ())),
            int(data.get("min_disk_mib", XFS_MIN_MIB)),
        )

    def check_settings(self, disk_mib: int) -> None:
        """Refuse, before any boot, settings this scenario cannot work with: a run that fails
        on them would blame the kernel for a setup mistake."""
        if disk_mib < self.min_disk_mib:
            raise SetupError(f"A {disk_mib} MiB LUN is too small for scenario {self.name}: "
                             f"it needs {self.min_disk_mib} MiB (XFS's minimum is "
                             f"{XFS_MIN_MIB}).", hint=f"Set disk_size to {self.min_disk_mib} "
                             "or more.")
        paths = self.env.get("PATHS")
        if paths is not None and (not paths.isdigit() or int(paths) > len(self.serials)):
            raise SetupError(f"Scenario {self.name} expects {paths} paths but declares "
                             f"{len(self.serials)} (serials).",
                             hint="Give one serial per path, or lower PATHS.")


def load(cut_dir: Path, name: str) -> Scenario:
    path = cut_dir / "scenarios" / f"{name}.yaml"
    if not _NAME.match(name) or not path.is_file():
        known = sorted(p.stem for p in (cut_dir / "scenarios").glob("*.yaml"))
        raise SetupError(f"No scenario {name!r} in {cut_dir / 'scenarios'}.",
                         hint="Known scenarios: " + (", ".join(known) or "none") + ".")
    data = _yaml_mapping(path)
    allowed = {"description", "image", "script", "env", "host", "serials", "kernel_log_allow",
               "min_disk_mib"}
    for key in data:
        if key not in allowed:
            raise SetupError(f"Unknown key {key!r} in scenario {path}.",
                             hint="Known keys: " + ", ".join(sorted(allowed)) + ".")
    script = path.parent / str(data.get("script", f"{name}.sh"))
    if not script.is_file():
        raise SetupError(f"Scenario {path} names script {script}, which does not exist.")
    env = data.get("env") or {}
    if not isinstance(env, dict) or not all(_NAME.match(str(k)) for k in env):
        raise SetupError(f"env in scenario {path} must map NAME: value.")
    host = data.get("host") or {}
    if not isinstance(host, dict):
        raise SetupError(f"host in scenario {path} must map event: [commands].")
    serials = data.get("serials", ["MPIO", "MPIO"])
    if not isinstance(serials, list) or not serials or not all(
            isinstance(x, str) and _NAME.match(x) for x in serials):
        raise SetupError(f"serials in scenario {path} must list one SCSI serial per path.")
    allow = data.get("kernel_log_allow") or []
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise SetupError(f"kernel_log_allow in scenario {path} must list regular expressions.")
    for pattern in allow:
        try:
            re.compile(pattern)
        except re.error as e:
            raise SetupError(f"kernel_log_allow in scenario {path}: {pattern!r} is not a "
                             f"regular expression ({e}).") from None
    min_disk = data.get("min_disk_mib", XFS_MIN_MIB)
    if not isinstance(min_disk, int) or isinstance(min_disk, bool) or min_disk <= 0:
        raise SetupError(f"min_disk_mib in scenario {path} must be a positive whole number.")
    return Scenario(
        name=name,
        description=str(data.get("description", "")),
        image=str(data.get("image", "mpio")),
        script=script,
        env={str(k): str(v) for k, v in env.items()},
        host={str(event): tuple(_command(c, path) for c in (cmds or []))
              for event, cmds in host.items()},
        serials=tuple(serials),
        kernel_log_allow=tuple(allow),
        min_disk_mib=min_disk,
    )


def _command(item: object, path: Path) -> MonitorCommand:
    if isinstance(item, dict) and set(item) == {"hmp"} and isinstance(item["hmp"], str):
        return MonitorCommand(hmp=item["hmp"])
    if isinstance(item, dict) and "qmp" in item and set(item) <= {"qmp", "arguments"}:
        args = item.get("arguments") or {}
        if isinstance(item["qmp"], str) and isinstance(args, dict):
            return MonitorCommand(qmp=item["qmp"], arguments=args)
    raise SetupError(f"Bad host command {item!r} in scenario {path}.",
                     hint="Write `- hmp: drive_del path0` or `- qmp: NAME` with `arguments:`.")


def _yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError:
        raise SetupError(f"{path} is not valid YAML.", hint="Fix its syntax.") from None
    if not isinstance(data, dict):
        raise SetupError(f"{path} must be a YAML mapping.")
    return data
