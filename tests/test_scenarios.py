"""Every scenario file, shipped and test-only, loads and is consistent with its steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rapido_mpio import scenario
from rapido_mpio.config import REPO_ROOT
from rapido_mpio.errors import SetupError
from rapido_mpio.protocol import FAULTS
from rapido_mpio.topology import LunError, guest_errors

from .conftest import TEST_SCENARIOS, cut_dir_with_test_scenarios

SHIPPED = sorted((REPO_ROOT / "cut" / "scenarios").glob("*.sh"))
TEST_ONLY = sorted(TEST_SCENARIOS.glob("*.sh"))
LIB = (REPO_ROOT / "cut/rootfs/usr/lib/mpio/lib.sh").read_text()
LIB_VARS = set(re.findall(r"^([A-Z][A-Z_]+)=", LIB, re.MULTILINE))  # lib.sh's own (MPIO_RUN)


@pytest.fixture(scope="module")
def cut_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut_dir_with_test_scenarios(tmp_path_factory.mktemp("cut"))


@pytest.mark.parametrize("path", SHIPPED + TEST_ONLY, ids=lambda p: p.stem)
def test_scenario_loads_and_its_steps_have_what_they_use(cut_dir: Path, path: Path) -> None:
    sc = scenario.load(cut_dir, path.stem)
    sc.check_settings(320)  # the default LUN
    assert sc.description, "say what the scenario proves"
    steps = sc.steps_script
    # every fault the steps ask for is one the host knows
    asked = set(re.findall(r"mpio_fault (\w+)", steps))
    unknown = asked - set(FAULTS)
    assert not unknown, f"faults the host does not know: {unknown}"
    # every ${VAR} the steps read without a default comes from env:, from rapido-mpio or
    # from lib.sh
    used = set(re.findall(r"\$\{?([A-Z][A-Z_]+)\b(?!:-)", steps))
    assert used - set(sc.guest_env()) - LIB_VARS == set()
    # a negative control names checks the steps can record
    for name in sc.expect_fail:
        stem = re.sub(r"_\d+$", "_", name)  # io_after_offline_2: a check made in a loop
        assert re.search(rf"\b{re.escape(stem)}", steps + LIB), f"{name}: no check of {sc.name}"


def test_variant_lays_its_declarations_over_its_base(cut_dir: Path) -> None:
    base = scenario.load(cut_dir, "failover")
    variant = scenario.load(cut_dir, "all-paths-lost")
    assert variant.steps_script == base.steps_script and variant.source == base.source
    assert variant.env["FAULT_PATHS"] == "0 1" and variant.env["DATA_MIB"] == base.env["DATA_MIB"]
    assert variant.steps == base.steps and variant.shape == base.shape
    assert variant.expect_fail and not base.expect_fail
    env = variant.guest_env()
    assert env["MPIO_STEP_fault"] == "35" and env["MPIO_PATHS"] == "2"


def test_lun_errors_are_read_from_the_header_and_reach_the_guest(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "base.sh").write_text(
        "#: description: x\n#: topology: {luns: 2, paths: 2}\n#: lun_errors:\n"
        "#:   - {lun: 1, op: write, errno: ENOSPC, sector: 786432}\n"
        "#:   - {lun: 1, op: read, errno: ENODATA, sector: 8, once: true}\n"
        "mpio_check x PASS ok\n")
    (tmp_path / "scenarios" / "variant.sh").write_text(
        "#: extends: base\n#: description: y\n")
    sc = scenario.load(tmp_path, "base")
    assert sc.lun_errors == (LunError(1, "write", "ENOSPC", 786432),
                             LunError(1, "read", "ENODATA", 8, once=True))
    assert scenario.load(tmp_path, "variant").lun_errors == sc.lun_errors
    assert guest_errors(sc.lun_errors) == "1 write ENOSPC 786432 always\n1 read ENODATA 8 once\n"
    sc.check_settings(385)
    with pytest.raises(SetupError, match="sector 786432 is outside the LUN of 320 MiB"):
        sc.check_settings(320)
    assert scenario.load(tmp_path, "base").lun_errors[0].reason == "No space left on device"


def test_test_only_scenarios_are_not_shipped() -> None:
    assert not {p.name for p in TEST_ONLY} & {p.name for p in SHIPPED}


def test_a_policy_from_the_command_line_overrides_the_scenario() -> None:
    base = scenario.load(REPO_ROOT / "cut", "all-paths-down")
    assert base.with_policy("scenario", "scenario") is base
    sc = base.with_policy("queue-length", "failover")
    assert sc.multipath.startswith(base.multipath)  # its own settings stay (no_path_retry)
    assert sc.multipath.endswith('overrides {\n\tpath_selector "queue-length 0"\n'
                                 "\tpath_grouping_policy failover\n}\n")
    assert sc.selectors() == {"queue-length"}  # so the selector check sees it
