"""Settings: defaults < file < environment < command line, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rapido_mpio import config
from rapido_mpio.errors import ExitCode, SetupError


def test_precedence(tmp_path: Path) -> None:
    (tmp_path / "rapido-mpio.yaml").write_text("memory: 2048\ncpus: 3\naccel: tcg\n")
    cfg = config.load({"cpus": "4"}, environ={"RAPIDO_MPIO_MEMORY": "512"}, cwd=tmp_path)
    assert (cfg.memory, cfg.cpus, cfg.accel) == (512, 4, "tcg")
    assert cfg.config_file == tmp_path / "rapido-mpio.yaml"
    assert cfg.scenario == "failover"  # default shows through


def test_kernel_src_from_environment_alias(tmp_path: Path) -> None:
    cfg = config.load({}, environ={"KERNEL_SRC": "/src/linux", "KBUILD_OUTPUT": "/b"},
                      cwd=tmp_path)
    assert cfg.kernel_src == Path("/src/linux") and cfg.kernel_build == Path("/b")
    assert config.load({}, environ={}, cwd=tmp_path).kernel_src is None


@pytest.mark.parametrize("files", [
    ("Makefile", "Kconfig", "scripts/kconfig/Makefile"),  # a source tree
    ("Makefile", ".config", "include/config/kernel.release"),  # a build (O=) directory
])
def test_the_kernel_tree_you_stand_in_is_the_default(tmp_path: Path,
                                                     files: tuple[str, ...]) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert config.load({}, environ={}, cwd=tmp_path).kernel_src == tmp_path
    # a tree named explicitly, or a build directory alone, wins over where you stand
    assert config.load({}, environ={"KBUILD_OUTPUT": "/b"}, cwd=tmp_path).kernel_src is None
    assert config.load({"kernel_src": "/s"}, environ={}, cwd=tmp_path).kernel_src == Path("/s")
    # and the artifacts never go into it by default
    assert not config.load({}, environ={}, cwd=tmp_path).output_dir.is_relative_to(tmp_path)


def test_a_directory_with_just_a_makefile_is_no_kernel_tree(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("all:\n")
    assert config.load({}, environ={}, cwd=tmp_path).kernel_src is None


@pytest.mark.parametrize("text, words", [
    ("memroy: 1\n", ["Unknown key 'memroy'", "rapido-mpio.yaml"]),
    ("memory: lots\n", ["memory", "rapido-mpio.yaml", "whole number from 256 to 1048576"]),
    ("accel: hvf\n", ["accel", "one of auto, kvm, tcg"]),
    ("memory: [1\n", ["not valid YAML", "line"]),
    ("- a\n- b\n", ["must be a mapping"]),
])
def test_bad_file_names_key_and_file(tmp_path: Path, text: str, words: list[str]) -> None:
    (tmp_path / "rapido-mpio.yaml").write_text(text)
    with pytest.raises(SetupError) as e:
        config.load({}, environ={}, cwd=tmp_path)
    assert e.value.exit_code == ExitCode.SETUP
    for w in words:
        assert w in str(e.value)


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="RAPIDO_MPIO_BOOT_TIMEOUT"):
        config.load({}, environ={"RAPIDO_MPIO_BOOT_TIMEOUT": "soon"}, cwd=tmp_path)


def test_shipped_config_file_documents_every_default() -> None:
    shipped = (config.REPO_ROOT / "rapido-mpio.yaml").read_text()
    assert shipped.strip() == config.render_defaults().strip()
    # and it is all comments: loading it changes nothing
    assert config.load({}, environ={}, cwd=config.REPO_ROOT).memory == 1024


def test_readme_documents_every_setting() -> None:
    readme = (config.REPO_ROOT / "README.md").read_text()
    for s in config.SETTINGS:
        assert f"| `{s.name}` |" in readme, s.name


def test_switches(tmp_path: Path) -> None:
    assert config.load({}, environ={}, cwd=tmp_path).console is False
    assert config.load({"console": "true"}, environ={}, cwd=tmp_path).console is True
    assert config.load({}, environ={"RAPIDO_MPIO_CONSOLE": "yes"}, cwd=tmp_path).console
    (tmp_path / "rapido-mpio.yaml").write_text("console: maybe\n")
    with pytest.raises(SetupError, match="true or false"):
        config.load({}, environ={}, cwd=tmp_path)


NUMBERS = [s for s in config.SETTINGS if s.kind in (int, float)]


@pytest.mark.parametrize("s", NUMBERS, ids=[s.name for s in NUMBERS])
def test_every_number_has_finite_bounds_in_file_env_and_help(tmp_path: Path,
                                                            s: config.Setting) -> None:
    low, high = s.bounds
    assert 0 < low < high < 10**7
    env = s.env_names[0]
    for ok in (low, high):
        assert getattr(config.load({}, environ={env: str(ok)}, cwd=tmp_path), s.name) == ok
    (tmp_path / "rapido-mpio.yaml").write_text(f"{s.name}: {high}\n")
    assert getattr(config.load({}, environ={}, cwd=tmp_path), s.name) == high
    bad = [low - 1, high + 1, 10**30] + (["nan", "inf", "-inf", "1e300"] if s.kind is float
                                         else ["1e3", "1.5"])
    for value in bad:
        with pytest.raises(SetupError, match=f"from {low} to {high}"):
            config.load({s.name: str(value)}, environ={}, cwd=tmp_path)
    (tmp_path / "rapido-mpio.yaml").write_text(f"{s.name}: {10**30}\n")
    with pytest.raises(SetupError, match=f"{s.name} in config file .* from {low} to {high}"):
        config.load({}, environ={}, cwd=tmp_path)
    assert f"From {low} to {high}." in s.full_help and s.full_help in config.render_defaults()


def test_string_settings_refuse_control_characters(tmp_path: Path) -> None:
    for name in ("kernel_cmdline", "qemu", "scenario_env", "output_dir", "kernel_src"):
        with pytest.raises(SetupError, match="control characters"):
            config.load({name: "a\nb"}, environ={}, cwd=tmp_path)
    assert config.load({"kernel_cmdline": "quiet loglevel=3"}, environ={},
                       cwd=tmp_path).kernel_cmdline == "quiet loglevel=3"


def test_a_key_without_a_value_leaves_the_setting_unset(tmp_path: Path) -> None:
    """`memory:` alone (null) gave memory None, which no later step expects."""
    (tmp_path / "rapido-mpio.yaml").write_text("memory:\nqemu: null\nvms:\n")
    cfg = config.load({}, environ={"RAPIDO_MPIO_CPUS": "3"}, cwd=tmp_path)
    assert (cfg.memory, cfg.qemu, cfg.vms, cfg.cpus) == (1024, "qemu-system-x86_64", None, 3)


def test_help_states_the_bounds() -> None:
    from .conftest import run_cli

    shown = " ".join(run_cli("boot", "--help").stdout.split())
    for s in NUMBERS:
        assert " ".join(s.full_help.split()) in shown, s.name
