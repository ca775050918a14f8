"""The matrix file -> combinations (axes, exclude, include, the fault axis), shards, the
exit code and the merge of shards; and bad matrix files, refused in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapido_mpio import config, matrix
from rapido_mpio.errors import ExitCode, SetupError
from rapido_mpio.results import (
    CheckResult,
    Combination,
    CombinationResult,
    KernelInfo,
    MatrixResult,
    merge,
)

CFG = config.load({}, environ={}, cwd=Path("/"))


def plan(tmp_path: Path, text: str) -> matrix.Plan:
    f = tmp_path / "m.yaml"
    f.write_text(text)
    return matrix.load(f, CFG)


def ids(p: matrix.Plan) -> list[str]:
    return [c.id for c in p.combinations]


def test_the_shipped_matrix_loads_and_is_big_enough() -> None:
    p = matrix.load(config.REPO_ROOT / "cut/matrix.yaml", CFG)
    assert len(p.combinations) >= 24
    assert len(set(ids(p))) == len(ids(p))
    assert {c.selector for c in p.combinations} >= {
        "round-robin", "queue-length", "service-time", "historical-service-time"}


def test_product_less_exclusions_plus_inclusions(tmp_path: Path) -> None:
    p = plan(tmp_path, """
kernels: [default]
axes:
  scenario: [failover, offline-one-by-one-small]
  selector: [round-robin, service-time]
  fault: [fail_path, offline]
exclude:
  - {scenario: failover, selector: service-time, fault: offline}
include:
  - {scenario: offline-one-by-one-small, env: {KEEP: 0}}
  - {scenario: failover, selector: round-robin, fault: fail_path}
""")
    assert ids(p) == [
        "failover/round-robin/-/fail_path/default",
        "failover/round-robin/-/offline/default",
        "failover/service-time/-/fail_path/default",
        # no FAULT env: the fault axis does not multiply it
        "offline-one-by-one-small/round-robin/-/-/default",
        "offline-one-by-one-small/service-time/-/-/default",
        "offline-one-by-one-small/-/-/-/default/KEEP=0",
        # the last include repeats a product cell: kept once
    ]


def test_kernels_axis_and_an_include_on_one_kernel(tmp_path: Path) -> None:
    p = plan(tmp_path, """
kernels: [default, /src/linux-a, /src/linux-a:/build/b]
axes: {scenario: [failover]}
include: [{scenario: all-paths-lost, kernel: linux-a}]
""")
    assert [k.id for k in p.kernels] == ["default", "linux-a", "linux-a-2"]
    assert p.kernels[2].build == Path("/build/b")
    assert ids(p)[-1] == "all-paths-lost/-/-/-/linux-a"
    assert len(p.combinations) == 4


def test_config_kernel_is_the_one_the_settings_name(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("axes: {scenario: [failover]}\n")
    assert matrix.load(f, CFG).kernels[0].id == "default"
    tree = CFG.replace(kernel_src=tmp_path / "linux")
    assert matrix.load(f, tree).kernels[0].src == tmp_path / "linux"


def test_shards_are_even_disjoint_and_whole() -> None:
    p = matrix.load(config.REPO_ROOT / "cut/matrix.yaml", CFG)
    slices = [p.shard(i, 3) for i in (1, 2, 3)]
    got = [c for s in slices for c in s.combinations]
    assert sorted(c.id for c in got) == sorted(ids(p))
    sizes = [len(s.combinations) for s in slices]
    assert max(sizes) - min(sizes) <= 1
    assert ids(p.shard(2, 3)) == ids(matrix.load(config.REPO_ROOT / "cut/matrix.yaml",
                                                 CFG).shard(2, 3))


@pytest.mark.parametrize("text", ["0/3", "4/3", "2", "a/b", "1/0"])
def test_bad_shard(text: str) -> None:
    with pytest.raises(SetupError, match="I/N"):
        matrix.parse_shard(text)


@pytest.mark.parametrize(("text", "words"), [
    ("axes: {scenario: [failover]}\nexlude: []\n", ["Unknown key 'exlude'", "Known keys"]),
    ("axes: {scenario: [failover], selector: [round-robbin]}\n",
     ["selector 'round-robbin'", "queue-length"]),
    ("axes: {scenario: [nope]}\n", ["No scenario 'nope'"]),
    ("include: [{scenario: offline-one-by-one, fault: offline}]\n", ["has no fault to choose"]),
    ("include: [{scenario: failover, env: {DATAMIB: 1}}]\n", ["no env 'DATAMIB'", "DATA_MIB"]),
    ("include: [{scenario: failover, env: {FAULT: offline}}]\n", ["use fault:"]),
    ("include: [{selector: round-robin}]\n", ["names no scenario"]),
    ("include: [{scenario: failover, kernel: other}]\n", ["kernel 'other'"]),
    ("axes: {scenario: failover}\n", ["must be a list"]),
    ("axes: {}\n", ["lists no combination"]),
    ("axes: [\n", ["not valid YAML"]),
    ("- a\n", ["must be a mapping"]),
    ("kernels: []\naxes: {scenario: [failover]}\n", ["kernels in matrix file"]),
])
def test_bad_matrix_files_are_named(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(SetupError) as e:
        plan(tmp_path, text)
    assert e.value.exit_code == ExitCode.SETUP
    for w in words:
        assert w in str(e.value)


def result(scenario: str, status: str, expect_fail: tuple[str, ...] = (),
           failed: tuple[str, ...] = (), kernel: str = "default") -> CombinationResult:
    checks = tuple(CheckResult(n, "FAIL", "x") for n in failed)
    as_declared = None
    if expect_fail:
        as_declared = status == "FAIL" and set(failed) == set(expect_fail)
    code = {"PASS": 0, "FAIL": 1, "UNTESTABLE": 125, "ERROR": 255, "SKIPPED": 0}[status]
    return CombinationResult(Combination(scenario, kernel), status, code, "why", checks,
                             expect_fail=expect_fail, as_declared=as_declared)


def whole(*rs: CombinationResult) -> MatrixResult:
    return MatrixResult("m.yaml", ("1/1",), 1.0, 2,
                        (KernelInfo("default", "Debian", "6.1", "linux-image-amd64"),), rs)


def test_exit_code_rules() -> None:
    ok = result("failover", "PASS")
    control = result("all-paths-lost", "FAIL", ("path_io",), ("path_io",))
    blind = result("all-paths-lost", "PASS", ("path_io",))
    assert whole(ok, control, result("x", "SKIPPED")).exit_code == ExitCode.PASS
    assert whole(ok, result("y", "UNTESTABLE")).exit_code == ExitCode.UNTESTABLE
    assert whole(ok, result("y", "UNTESTABLE"), blind).exit_code == ExitCode.FAIL
    assert whole(ok, result("y", "FAIL", failed=("a",))).exit_code == ExitCode.FAIL
    assert whole(result("y", "FAIL"), result("z", "ERROR")).exit_code == ExitCode.SETUP
    s = whole(ok, control, blind, result("x", "SKIPPED")).summary()
    assert (s.passed, s.controls_as_declared, s.controls_not_as_declared, s.skipped) == \
        (1, 1, 1, 1)
    assert s.total == 4


def test_matrix_json_round_trips_and_shards_merge(tmp_path: Path) -> None:
    a = whole(result("failover", "PASS"), result("all-paths-lost", "FAIL", ("p",), ("p",)))
    b = whole(result("reinstate", "FAIL", failed=("io_after_restore",)))
    b = MatrixResult(b.matrix, ("2/2",), 3.0, 1, b.kernels, b.results)
    back = MatrixResult.read(a.write(tmp_path / "a.json"))
    assert back == a
    merged = merge([back, b])
    assert merged.shards == ("1/1", "2/2") and merged.seconds == 3.0
    assert [r.combination.scenario for r in merged.results] == \
        ["failover", "all-paths-lost", "reinstate"]
    assert merged.exit_code == ExitCode.FAIL
    with pytest.raises(SetupError, match="in two shards"):
        merge([a, a])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SetupError, match="not a rapido-mpio matrix.json"):
        MatrixResult.read(tmp_path / "bad.json")
