"""Files and values a user hands the tool, read within bounds and refused in one sentence.

Config, scenario and matrix files, image.json and matrix.json: whatever they hold, reading
them ends in a value or a SetupError, never a traceback, a huge message or a full memory.
"""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rapido_mpio.errors import SetupError

MAX_FILE_BYTES = 1 << 20  # a config, scenario or matrix file is a few KB, written by hand
MAX_JSON_BYTES = 64 << 20  # matrix.json: a few KB per combination
MAX_YAML_VALUES = 10_000  # a YAML document's values with every alias expanded

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's is several times faster
_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = 60
_EXCERPT.maxlevel, _EXCERPT.maxlist, _EXCERPT.maxdict = 2, 4, 4

T = TypeVar("T")


def excerpt(value: object) -> str:
    """A value as an error message quotes it: one line, a few dozen characters at most."""
    return _EXCERPT.repr(value)[:80]


def printable(text: str) -> str:
    """Text for a one-line message: what would break the line or hide itself is escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def check_printable(text: str, what: str) -> str:
    """Refuse control characters (a newline, a NUL, a line separator) in a value that
    becomes an argument, a path or a line for the guest: one would split it in two."""
    bad = next((i for i, c in enumerate(text) if not c.isprintable()), None)
    if bad is not None:
        raise SetupError(f"{what} must not contain control characters, but has "
                         f"{text[bad]!r} at character {bad + 1}: {excerpt(text)}.",
                         hint=f"Fix {what}.")
    return text


def read_text(path: Path, what: str, hint: str, limit: int = MAX_FILE_BYTES) -> str:
    """A file's text, UTF-8, at most `limit` bytes. `what` names it: "config file"."""
    shown = printable(str(path))
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        reason = getattr(e, "strerror", None) or "not a valid path"
        raise SetupError(f"Cannot read {what} {shown}: {reason}.", hint=hint) from None
    if len(data) > limit:
        raise SetupError(f"The {what} {shown} is larger than {limit >> 10} KiB, the most "
                         "rapido-mpio reads.", hint=hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SetupError(f"The {what} {shown} is not UTF-8 text (byte {e.start}).",
                         hint=hint) from None


class YAMLTooLarge(yaml.YAMLError):
    """A document whose aliases expand it past MAX_YAML_VALUES (a "billion laughs")."""


def parse_yaml(text: str) -> Any:
    """Safe YAML, refused when its aliases would expand it past MAX_YAML_VALUES: a reader
    that walks or prints the value must not run out of memory on a few lines."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_values(node)
        return loader.construct_document(node)
    except RecursionError:  # the pure-Python loader composes recursively
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def _count_values(root: yaml.Node) -> None:
    """The values of the document with every alias expanded, as in the constructed data."""
    sizes: dict[int, int] = {}
    # iterative post-order, since an alias may nest a node a thousand times deep
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[id(node)] > MAX_YAML_VALUES:
                raise YAMLTooLarge(f"more than {MAX_YAML_VALUES} values")
            continue
        if id(node) in sizes:
            continue
        sizes[id(node)] = 0  # pending: an alias back to it (a cycle) counts as one value
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, what: str, hint: str, line_offset: int = 0) -> Any:
    """parse_yaml, its errors as one sentence naming `what` ("Config file X") and the line."""
    try:
        return parse_yaml(text)
    except YAMLTooLarge:
        raise SetupError(f"{what} expands to more than {MAX_YAML_VALUES} values through "
                         "its YAML aliases, more than rapido-mpio reads.", hint=hint) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1 + line_offset})" if mark is not None else ""
        raise SetupError(f"{what} is not valid YAML{where}.", hint=hint) from None


def parse_json(text: str) -> Any:
    """JSON; any way it is not (too deep a nesting too) is a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class Record:
    """A JSON object read field by field, each value of the type its reader asks for; a
    wrong or missing one is a ValueError naming the field (the reader makes it a sentence)."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{where} is not an object")
        self.data: dict[str, Any] = value
        self.where = where

    def get(self, key: str, kind: type[T]) -> T:
        if key not in self.data:
            raise ValueError(f"{self.where} has no {key}")
        return self._typed(key, self.data[key], kind)

    def optional(self, key: str, kind: type[T]) -> T | None:
        value = self.data.get(key)
        return None if value is None else self._typed(key, value, kind)

    def number(self, key: str, default: float | None = None) -> float:
        """A finite number (an int is one too)."""
        value = self.data.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 53:
            value = float(value)
        if not isinstance(value, float) or not math.isfinite(value):
            raise ValueError(f"{self.where}.{key} is not a number")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.optional(key, list) or []
        if not all(isinstance(s, str) for s in items):
            raise ValueError(f"{self.where}.{key} is not a list of strings")
        return tuple(items)

    def records(self, key: str) -> list[Record]:
        return [Record(v, f"{self.where}.{key}[{i}]")
                for i, v in enumerate(self.optional(key, list) or [])]

    def record(self, key: str) -> Record:
        """An object, or null for an empty one."""
        return Record(self.optional(key, dict) or {}, f"{self.where}.{key}")

    def _typed(self, key: str, value: object, kind: type[T]) -> T:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ValueError(f"{self.where}.{key} is not {kind.__name__}")
        return value
