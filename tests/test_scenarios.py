"""Every scenario file, shipped and test-only, loads and is consistent with its script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rapido_mpio import scenario
from rapido_mpio.config import REPO_ROOT

from .conftest import TEST_SCENARIOS, cut_dir_with_test_scenarios

SHIPPED = sorted((REPO_ROOT / "cut" / "scenarios").glob("*.yaml"))
TEST_ONLY = sorted(TEST_SCENARIOS.glob("*.yaml"))


@pytest.fixture(scope="module")
def cut_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut_dir_with_test_scenarios(tmp_path_factory.mktemp("cut"))


@pytest.mark.parametrize("path", SHIPPED + TEST_ONLY, ids=lambda p: p.stem)
def test_scenario_loads_and_its_script_has_what_it_uses(cut_dir: Path, path: Path) -> None:
    sc = scenario.load(cut_dir, path.stem)
    sc.check_settings(320)  # the default LUN
    assert sc.description, "say what the scenario proves"
    script = sc.script.read_text()
    # every event the host is told to act on is one the script can signal
    signalled = set(re.findall(r"mpio_signal ([\w-]+)", script))
    assert set(sc.host) <= signalled, f"host: {set(sc.host)}, script signals {signalled}"
    # every ${VAR} the script reads without a default comes from env: or from the guest
    used = set(re.findall(r"\$\{?([A-Z][A-Z_]+)\b(?!:-)", script))
    assert used - set(sc.env) - {"MPIO_SCENARIO", "MPIO_RUN"} == set()


def test_test_only_scenarios_are_not_shipped() -> None:
    assert not {p.name for p in TEST_ONLY} & {p.name for p in SHIPPED}
