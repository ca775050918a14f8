"""Fuzzing the readers of what users and earlier runs hand the tool (issue 15): the config
file and settings, a scenario's #: header, the matrix file, image.json and matrix.json.

Whatever goes in, out comes a well-typed value or an MpioError (one sentence, 255), never
another exception. Seeded (derandomize) and bounded, so it is the same quick run each time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rapido_mpio import config, image, matrix, results, scenario
from rapido_mpio.config import REPO_ROOT
from rapido_mpio.errors import MpioError
from rapido_mpio.inputs import MAX_YAML_VALUES, Record, parse_yaml

FUZZ = settings(derandomize=True, database=None, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-2, 2000)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# the pieces YAML is made of, so the text is often nearly YAML and reaches past the parser
YAML_TOKENS = st.sampled_from([
    "\n", "\n  ", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b", "!!str ",
    "!!python/object:os.system ", "!!binary ", "|\n  ", "'", '"', "#", "~", "1e400", "-1",
    "0x10", ".nan", ".inf", "\\0", "\x00", "\u2028", "\xff", "<<: *a", "? ", "---\n", "...",
])
NEARLY_YAML = st.lists(YAML_TOKENS | st.text(max_size=6), max_size=30).map("".join)


def yaml_text(keys: list[str], values: st.SearchStrategy[Any] = VALUES) -> st.SearchStrategy[str]:
    """Arbitrary text, nearly-YAML, or a mapping of known (and some unknown) keys to
    arbitrary values, dumped as YAML."""
    mapping = st.dictionaries(st.sampled_from(keys) | st.text(max_size=6) | st.integers(),
                              values, max_size=6)
    return (st.text(max_size=200) | NEARLY_YAML
            | mapping.map(lambda m: yaml.safe_dump(m, allow_unicode=True)))


T = typing.TypeVar("T")


def read_or_refuse(read: typing.Callable[[], T]) -> T | None:
    """What a reader returns, or None when it refused in one sentence (an MpioError); any
    other exception fails the test. Counts both, for --hypothesis-show-statistics."""
    try:
        value = read()
    except MpioError:
        event("refused")
        return None
    event("read")
    assert_typed(value)
    return value


def assert_typed(value: object) -> None:
    """A dataclass whose every field has the type its annotation declares, all the way
    down: what a reader returns must be safe to use without checking it again."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    hints = typing.get_type_hints(type(value))
    for f in dataclasses.fields(value):
        _check_type(getattr(value, f.name), hints[f.name], f"{type(value).__name__}.{f.name}")


def _check_type(value: object, hint: Any, where: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        assert any(_fits(value, a) for a in args), (where, value)
        for a in args:
            if _fits(value, a):
                _check_type(value, a, where)
                return
    elif origin is tuple:
        assert isinstance(value, tuple), (where, value)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        assert len(items) == len(value), (where, value)
        for item, h in zip(value, items, strict=True):
            _check_type(item, h, where)
    elif origin is dict:
        assert isinstance(value, dict), (where, value)
        for k, v in value.items():
            _check_type(k, args[0], where)
            _check_type(v, args[1], where)
    elif hint is Any:
        return
    else:
        assert _fits(value, hint), (where, value, hint)
        if isinstance(value, float):
            assert math.isfinite(value), (where, value)
        assert_typed(value)


def _fits(value: object, hint: Any) -> bool:
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint) or hint
    if origin is float:
        return isinstance(value, float)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin)


# -- the config file, the environment and the command line


PLAUSIBLE_CONFIG = st.dictionaries(
    st.sampled_from(list(config.SETTINGS_BY_NAME)),
    st.integers(-2, 300) | st.sampled_from([1024, 10**26, 86400, 86401, "nan", "1e20", True,
                                            None, ""])
    | st.floats() | st.text(max_size=10) | st.sampled_from(["tcg", "zstd", "/tmp", "~/x"]),
    max_size=5).map(lambda m: yaml.safe_dump(m, allow_unicode=True))


@FUZZ
@given(text=yaml_text(list(config.SETTINGS_BY_NAME)) | PLAUSIBLE_CONFIG)
def test_config_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "rapido-mpio.yaml").write_text(text, errors="surrogatepass")
    _config_or_error(lambda: config.load({}, environ={}, cwd=tmp_path))


@FUZZ
@given(data=st.binary(max_size=300))
def test_config_file_bytes(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "rapido-mpio.yaml").write_bytes(data)
    _config_or_error(lambda: config.load({}, environ={}, cwd=tmp_path))


@FUZZ
@given(name=st.sampled_from(list(config.SETTINGS_BY_NAME)),
       text=st.text(max_size=40) | st.from_regex(r"-?[0-9]{1,40}(\.[0-9]*)?(e-?[0-9]+)?",
                                                 fullmatch=True),
       via=st.sampled_from(["cli", "env"]))
def test_setting_values(tmp_path: Path, name: str, text: str, via: str) -> None:
    setting = config.SETTINGS_BY_NAME[name]
    if via == "cli":
        _config_or_error(lambda: config.load({name: text}, environ={}, cwd=tmp_path))
    elif "\x00" not in text:  # an environment cannot hold a NUL
        _config_or_error(lambda: config.load({}, environ={setting.env_names[0]: text},
                                             cwd=tmp_path))


def _config_or_error(load: typing.Callable[[], config.Config]) -> None:
    cfg = read_or_refuse(load)
    if cfg is None:
        return
    for s in config.SETTINGS:
        value = getattr(cfg, s.name)
        if s.kind in (int, float) and value is not None:
            assert s.bounds[0] <= value <= s.bounds[1]
        if isinstance(value, str | Path):
            assert str(value).isprintable()


# -- a scenario's #: header


HEADER_VALUES = VALUES | st.sampled_from([
    {"luns": 1, "paths": 2}, {"luns": 2, "paths": 9}, {"lun_mib": 10**30}, {"fault": 1e300},
    {"fault": 30}, {"DATA_MIB": 4}, ["io_after_fault"], ["(", "a{99999}"], "failover",
    "mpio", "../x", {"fault": float("nan")}])


IDENTS = st.from_regex(r"[A-Z][A-Z0-9_]{0,5}", fullmatch=True)
SMALL = st.integers(-1, 20) | st.sampled_from([300, 400000000, 10**30])
# nearly right: each key with a value of about the type it takes, so many headers load
PLAUSIBLE_HEADER = st.fixed_dictionaries({"description": st.text(min_size=1, max_size=20)},
                                         optional={
    "topology": st.fixed_dictionaries({}, optional={"luns": SMALL, "paths": SMALL,
                                                    "lun_mib": SMALL}),
    "steps": st.dictionaries(st.sampled_from(["fault", "restore", "x"]) | IDENTS,
                             st.floats() | SMALL, max_size=3),
    "env": st.dictionaries(IDENTS, SCALARS, max_size=3),
    "expect_fail": st.lists(st.text(max_size=8), max_size=2),
    "kernel_log_allow": st.lists(st.text(max_size=8), max_size=2),
    "multipath": st.text(max_size=30), "extends": st.sampled_from(["failover", "x", "../x"]),
    "image": st.sampled_from(["mpio", "nosuch", "a/b"]), "min_disk_mib": SMALL,
}).map(lambda m: yaml.safe_dump(m, allow_unicode=True))


@FUZZ
@given(text=yaml_text(sorted(scenario.KEYS), HEADER_VALUES) | PLAUSIBLE_HEADER,
       steps=st.sampled_from(["mpio_check x PASS ok\n", "mpio_step fault\n", ""]))
def test_scenario_header(tmp_path: Path, text: str, steps: str) -> None:
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True, exist_ok=True)
    base = cut / "scenarios" / "failover.sh"
    if not base.exists():
        base.symlink_to(REPO_ROOT / "cut" / "scenarios" / "failover.sh")
    header = "".join(f"#: {line}\n" for line in text.split("\n"))
    (cut / "scenarios" / "x.sh").write_text(header + steps, errors="surrogatepass")
    sc = read_or_refuse(lambda: scenario.load(cut, "x"))
    if sc is None:
        return
    assert not sc.shape.problems()
    assert all(0 < s <= config.MAX_SECONDS for s in sc.steps.values())


@FUZZ
@given(data=st.binary(max_size=300))
def test_scenario_file_bytes(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "scenarios").mkdir(exist_ok=True)
    (tmp_path / "scenarios" / "x.sh").write_bytes(data)
    read_or_refuse(lambda: scenario.load(tmp_path, "x"))


# -- the matrix file

SCENARIOS = scenario.names(REPO_ROOT / "cut")
MATRIX_WORDS = st.sampled_from([*SCENARIOS[:6], "round-robin", "service-time", "multibus",
                                "failover", "fail_path", "offline", "config", "default", "/",
                                "a,b", "x\ny", "nosuch"])
MATRIX_VALUES = st.recursive(
    MATRIX_WORDS | SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from([*matrix.AXES, "kernel", "env", "KEEP", "FAULT", "SEED"])
        | st.text(max_size=4), inner, max_size=4), max_leaves=10)


def _lists(words: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(words) | MATRIX_WORDS, min_size=1, max_size=3)


PLAUSIBLE_MATRIX = st.fixed_dictionaries({}, optional={
    "kernels": _lists(["config", "default", "/", "/tmp", "/tmp:/"]),
    "axes": st.fixed_dictionaries({"scenario": _lists(SCENARIOS)}, optional={
        "selector": _lists(["round-robin", "service-time"]),
        "grouping": _lists(["multibus", "failover"]),
        "fault": _lists(["fail_path", "offline"])}),
    "exclude": st.lists(st.dictionaries(st.sampled_from(matrix.AXES), MATRIX_WORDS,
                                        max_size=2), max_size=2),
    "include": st.lists(st.fixed_dictionaries({"scenario": st.sampled_from(SCENARIOS)},
                                              optional={"env": st.dictionaries(
                                                  IDENTS | st.sampled_from(["KEEP", "SEED"]),
                                                  SCALARS | MATRIX_WORDS, max_size=2),
                                                  "fault": MATRIX_WORDS,
                                                  "kernel": MATRIX_WORDS}), max_size=2),
}).map(lambda m: yaml.safe_dump(m, allow_unicode=True))


@FUZZ
@given(text=yaml_text(sorted(matrix.KEYS), MATRIX_VALUES) | PLAUSIBLE_MATRIX
       | st.binary(max_size=200))
def test_matrix_file(tmp_path: Path, text: str | bytes) -> None:
    path = tmp_path / "m.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, errors="surrogatepass")
    cfg = config.load({"cut_dir": str(REPO_ROOT / "cut")}, environ={}, cwd=tmp_path)
    plan = read_or_refuse(lambda: matrix.load(path, cfg))
    if plan is None:
        return
    for c in plan.combinations:
        assert all("," not in v and v.isprintable() for _, v in c.env)
        assert c.kernel and c.kernel in {k.id for k in plan.kernels}


@FUZZ
@given(text=st.text(max_size=12) | st.from_regex(r"[0-9²٣]{1,7}/[0-9²٣]{1,7}", fullmatch=True))
def test_shard(text: str) -> None:
    """A superscript digit passes str.isdigit, and int() then fails on it."""
    shard = read_or_refuse(lambda: matrix.parse_shard(text))
    if shard is not None:
        assert 1 <= shard[0] <= shard[1] <= matrix.MAX_SHARDS


# -- image.json and matrix.json: valid documents with one part changed, or anything


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-1, 300) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3), max_leaves=8)


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> str:
    """The document with a few of its parts replaced or removed, as JSON text; or a few
    characters of that text changed; or any JSON at all."""
    doc = json.loads(json.dumps(doc))
    how = draw(st.sampled_from(["replace", "text", "any"]))
    if how == "any":
        return json.dumps(draw(JSON_VALUES))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    text = json.dumps(doc)
    if how == "text":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=3)) + text[at + draw(st.integers(0, 3)):]
    return text


IMAGE = {"manifest": "mpio", "kernel_image": "/k/bzImage", "kernel_release": "6.1.0",
         "kernel_label": "Debian", "layers": ["/c/base.cpio", "/c/modules.cpio"],
         "selectors": ["round-robin", "service-time"]}


@FUZZ
@given(text=mutated(IMAGE))
def test_image_json(tmp_path: Path, text: str) -> None:
    (tmp_path / "image.json").write_text(text, errors="surrogatepass")
    img = read_or_refuse(lambda: image.load_image(tmp_path))
    if img is None:
        return
    again = json.loads(json.dumps(img.to_json()))  # what it read, it can write and read back
    assert image.Image.from_json(Record(again, "image")) == img


def _matrix_json() -> dict[str, Any]:
    c = results.Combination("failover", "default", "service-time", None, "offline",
                            (("KEEP", "1"),))
    return results.MatrixResult(
        matrix="cut/matrix.yaml", shards=("1/2",), seconds=12.5, jobs=1,
        kernels=(results.KernelInfo("default", "Debian", "6.1.0", "linux-image-amd64"),),
        results=(results.CombinationResult(
            c, "FAIL", 1, "one check failed",
            checks=(results.CheckResult("io", "FAIL", "stalled"),), seconds=9.5,
            run_dir="matrix-runs/01", log_tail=("a", "b"), expect_fail=("io",),
            as_declared=True),
            results.CombinationResult(dataclasses.replace(c, fault=None, env=()), "PASS", 0,
                                      "ok"))).to_json()


@FUZZ
@given(text=mutated(_matrix_json()))
def test_matrix_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "matrix.json"
    path.write_text(text, errors="surrogatepass")
    read = read_or_refuse(lambda: results.MatrixResult.read(path))
    if read is None:
        return
    read.summary(), read.exit_code  # noqa: B018 - they must not raise
    assert results.MatrixResult.read(read.write(tmp_path / "again.json")) == read


def test_a_valid_matrix_json_reads_back(tmp_path: Path) -> None:
    """The fuzzing's starting point is valid, so its mutations reach every field."""
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps(_matrix_json()))
    assert_typed(results.MatrixResult.read(path))
    (tmp_path / "image.json").write_text(json.dumps(IMAGE))
    assert_typed(image.load_image(tmp_path))


# -- the YAML bound itself


@pytest.mark.parametrize("levels, refused", [(3, False), (5, True)])
def test_yaml_aliases_expand_to_a_bounded_size(levels: int, refused: bool) -> None:
    """Nine lists of nine aliases of the last (a "billion laughs"); shared nodes count
    once per use, as in the data the reader gets, and a cycle ends."""
    text = "a0: &a0 [" + ", ".join(["x"] * 9) + "]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, levels))
    if refused:
        assert 9 ** levels > MAX_YAML_VALUES
        with pytest.raises(yaml.YAMLError):
            parse_yaml(text)
    else:
        assert len(parse_yaml(text)) == levels
    cyclic = parse_yaml("a: &a [1, *a]\n")
    assert cyclic["a"][1] is cyclic["a"]
