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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "image": self.image,
            "script": str(self.script), "env": self.env,
            "host": {k: [c.to_json() for c in v] for k, v in self.host.items()},
            "serials": list(self.serials),
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Scenario:
        return Scenario(
            data["name"], data["description"], data["image"], Path(data["script"]),
            dict(data["env"]),
            {k: tuple(MonitorCommand.from_json(c) for c in v) for k, v in data["host"].items()},
            tuple(data.get("serials", ("MPIO", "MPIO"))),
        )


def load(cut_dir: Path, name: str) -> Scenario:
    path = cut_dir / "scenarios" / f"{name}.yaml"
    if not _NAME.match(name) or not path.is_file():
        known = sorted(p.stem for p in (cut_dir / "scenarios").glob("*.yaml"))
        raise SetupError(f"No scenario {name!r} in {cut_dir / 'scenarios'}.",
                         hint="Known scenarios: " + (", ".join(known) or "none") + ".")
    data = _yaml_mapping(path)
    allowed = {"description", "image", "script", "env", "host", "serials"}
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
    return Scenario(
        name=name,
        description=str(data.get("description", "")),
        image=str(data.get("image", "mpio")),
        script=script,
        env={str(k): str(v) for k, v in env.items()},
        host={str(event): tuple(_command(c, path) for c in (cmds or []))
              for event, cmds in host.items()},
        serials=tuple(serials),
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
