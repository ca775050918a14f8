"""Bad input ends in one clear sentence and the documented exit code, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import run_cli


def assert_one_sentence(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0]


def fake_tree(root: Path, config: str, built: bool = True) -> Path:
    """Just enough of a kernel build tree for the checks that come before any boot."""
    root.mkdir()
    (root / "Makefile").write_text("# fake\n")
    (root / ".config").write_text(config)
    if built:
        (root / "arch/x86/boot").mkdir(parents=True)
        (root / "arch/x86/boot/bzImage").write_bytes(b"\0" * 512)
        (root / "include/config").mkdir(parents=True)
        (root / "include/config/kernel.release").write_text("6.1.0-fake\n")
    return root


def full_config() -> str:
    from rapido_mpio.kernel import required_options

    return "".join(f"{opt}=y\n" for opt in required_options())


def test_missing_kernel_tree(tmp_path: Path) -> None:
    p = run_cli("cut", "--kernel-src", str(tmp_path / "nope"), cwd=tmp_path)
    assert_one_sentence(p, 255, "does not exist", "KERNEL_SRC")


def test_unbuilt_kernel_tree(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "linux", full_config(), built=False)
    p = run_cli("cut", cwd=tmp_path, env={"KERNEL_SRC": str(tree)})
    assert_one_sentence(p, 255, "not built", "make")


def test_kernel_without_dm_multipath_is_untestable(tmp_path: Path) -> None:
    config = full_config().replace("CONFIG_DM_MULTIPATH=y\n", "# CONFIG_DM_MULTIPATH is not set\n")
    tree = fake_tree(tmp_path / "linux", config)
    p = run_cli("cut", "--kernel-src", str(tree), cwd=tmp_path)
    assert_one_sentence(p, 125, "CONFIG_DM_MULTIPATH", "kconfig/mpio.config")
    assert "CONFIG_DM_MULTIPATH_QL" not in p.stderr.replace("CONFIG_DM_MULTIPATH,", "")


def test_every_missing_option_is_listed_at_once(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "linux", "CONFIG_64BIT=y\n")
    p = run_cli("cut", "--kernel-src", str(tree), cwd=tmp_path)
    assert_one_sentence(p, 125, "CONFIG_DM_MULTIPATH", "CONFIG_XFS_FS", "CONFIG_SCSI_VIRTIO")


def test_broken_config_file(tmp_path: Path) -> None:
    (tmp_path / "rapido-mpio.yaml").write_text("memory: [\n")
    p = run_cli("cut", cwd=tmp_path)
    assert_one_sentence(p, 255, "rapido-mpio.yaml", "not valid YAML")


def test_unknown_config_key(tmp_path: Path) -> None:
    (tmp_path / "rapido-mpio.yaml").write_text("kernel_source: /src\n")
    p = run_cli("run", cwd=tmp_path)
    assert_one_sentence(p, 255, "Unknown key 'kernel_source'", "rapido-mpio.yaml")


def test_unknown_scenario(tmp_path: Path) -> None:
    p = run_cli("cut", "--scenario", "nosuch", cwd=tmp_path)
    assert_one_sentence(p, 255, "nosuch", "failover")


def test_boot_without_image(tmp_path: Path) -> None:
    p = run_cli("boot", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_sentence(p, 255, "No image", "cut")


def _fake_image(out: Path) -> None:
    (out / "image").mkdir(parents=True)
    (out / "image/image.json").write_text(json.dumps({
        "manifest": "mpio", "kernel_image": "/nonexistent/bzImage", "kernel_release": "x",
        "kernel_label": "x", "layers": []}))


def test_scenario_for_another_image(tmp_path: Path) -> None:
    _fake_image(tmp_path / "out")
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True)
    (cut / "scenarios" / "x.sh").write_text("#: description: x\n#: image: bigger\ntrue\n")
    p = run_cli("boot", "--output-dir", str(tmp_path / "out"), "--cut-dir", str(cut),
                "--scenario", "x", cwd=tmp_path)
    assert_one_sentence(p, 255, "needs image bigger", "cut from mpio")


def test_qemu_missing_from_path(tmp_path: Path) -> None:
    _fake_image(tmp_path / "out")
    p = run_cli("boot", "--output-dir", str(tmp_path / "out"), "--accel", "tcg", cwd=tmp_path,
                env={"PATH": "/nonexistent"})
    assert_one_sentence(p, 255, "QEMU", "not installed", "qemu-system-x86")


@pytest.mark.skipif(not os.path.exists("/dev/kvm") or "vmx" in Path("/proc/cpuinfo").read_text()
                    or "svm" in Path("/proc/cpuinfo").read_text(),
                    reason="needs a machine without usable hardware KVM")
def test_kvm_asked_for_without_hardware_kvm(tmp_path: Path) -> None:
    _fake_image(tmp_path / "out")
    p = run_cli("boot", "--output-dir", str(tmp_path / "out"), "--accel", "kvm", cwd=tmp_path)
    assert_one_sentence(p, 255, "KVM", "--accel tcg")


def test_qemu_that_fails_to_start(tmp_path: Path) -> None:
    _fake_image(tmp_path / "out")  # the kernel image does not exist: QEMU refuses
    p = run_cli("boot", "--output-dir", str(tmp_path / "out"), "--accel", "tcg", cwd=tmp_path)
    assert p.returncode == 255, p.stdout + p.stderr
    assert "QEMU failed to start" in p.stdout and "Traceback" not in p.stderr


def test_module_listed_but_not_built_is_untestable(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "linux", full_config() + "CONFIG_MODULES=y\n")
    (tree / "modules.order").write_text("drivers/md/dm-multipath.ko\n")
    p = run_cli("cut", "--kernel-src", str(tree), "--cache-dir", str(tmp_path / "c"),
                cwd=tmp_path)
    assert_one_sentence(p, 125, "dm-multipath.ko", "not built")


def test_kernel_with_one_serial_port_is_untestable(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "linux", full_config() + "CONFIG_SERIAL_8250_RUNTIME_UARTS=1\n")
    p = run_cli("cut", "--kernel-src", str(tree), cwd=tmp_path)
    assert_one_sentence(p, 125, "CONFIG_SERIAL_8250_RUNTIME_UARTS>=2")


def test_bad_usage_is_255_not_argparse_2(tmp_path: Path) -> None:
    """Under git bisect run, exit 2 would mark the commit bad."""
    p = run_cli("run", "--accel", "hvf", cwd=tmp_path)
    assert p.returncode == 255 and "invalid choice" in p.stderr


def test_lun_too_small_for_xfs_is_refused_before_boot(tmp_path: Path) -> None:
    """Not a FAIL on `mounted`: under git bisect run that would mark every commit bad."""
    p = run_cli("run", "--disk-size", "16", "--output-dir", str(tmp_path / "out"),
                cwd=tmp_path)
    assert_one_sentence(p, 255, "16 MiB LUN is too small", "disk_size to 300")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("header, words", [
    ("#: description: x\n#: topology: {luns: 17, paths: 2}\n", ["luns must be 1 to 16"]),
    ("#: description: x\n#: topology: {luns: 1, paths: 9}\n", ["paths must be 1 to 8"]),
    ("#: description: x\n#: colour: red\n", ["Unknown key 'colour'", "Known keys"]),
    ("#: description: [x\n", ["not valid YAML"]),
    ("#: topology: {luns: 1}\n", ["no description"]),
    ("#: description: x\n#: env: {MPIO_LUNS: 3}\n", ["sets an MPIO_ name"]),
    ("#: description: x\n#: extends: nothing-here\n", ["No scenario 'nothing-here'"]),
])
def test_broken_scenario_file(tmp_path: Path, header: str, words: list[str]) -> None:
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True)
    (cut / "scenarios" / "x.sh").write_text(header + "mpio_check x PASS ok\n")
    p = run_cli("cut", "--cut-dir", str(cut), "--scenario", "x", cwd=tmp_path)
    assert_one_sentence(p, 255, *words)


def test_step_without_a_deadline_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True)
    (cut / "scenarios" / "x.sh").write_text("#: description: x\nmpio_step wait_a_bit\n")
    p = run_cli("cut", "--cut-dir", str(cut), "--scenario", "x", cwd=tmp_path)
    assert_one_sentence(p, 255, "step wait_a_bit without a deadline",
                        "#: steps: {wait_a_bit: SECONDS}")


def test_output_dir_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    p = run_cli("cut", "--output-dir", str(blocker / "out"), cwd=tmp_path)
    assert_one_sentence(p, 255, "Cannot write to the output directory", "--output-dir")


@pytest.mark.parametrize("flag", ["--repeat", "--confirm"])
def test_bad_counts_are_usage_errors(tmp_path: Path, flag: str) -> None:
    command = "bisect" if flag == "--confirm" else "run"
    extra = ["--good", "a", "--bad", "b"] if command == "bisect" else []
    p = run_cli(command, *extra, flag, "-1", cwd=tmp_path)
    assert p.returncode == 255 and "want a whole number" in p.stderr
    assert "Traceback" not in p.stderr


def test_kernel_without_the_scenarios_path_selector_is_untestable(tmp_path: Path) -> None:
    """Not a FAIL: a missing selector says nothing about the kernel's dm-multipath."""
    out = tmp_path / "out"
    _fake_image(out)
    image = json.loads((out / "image/image.json").read_text())
    image["selectors"] = ["round-robin", "service-time"]
    (out / "image/image.json").write_text(json.dumps(image))
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True)
    (cut / "scenarios" / "x.sh").write_text(
        '#: description: x\n#: multipath: |\n#:   defaults {\n'
        '#:   \tpath_selector "queue-length 0"\n#:   }\nmpio_check x PASS ok\n')
    p = run_cli("boot", "--output-dir", str(out), "--cut-dir", str(cut), "--scenario", "x",
                cwd=tmp_path)
    assert_one_sentence(p, 125, "uses the queue-length path selector", "CONFIG_DM_MULTIPATH_QL")


def test_matrix_without_qemu(tmp_path: Path) -> None:
    p = run_cli("matrix", "--output-dir", str(tmp_path / "out"), "--accel", "tcg",
                cwd=tmp_path, env={"PATH": "/nonexistent"})
    assert_one_sentence(p, 255, "QEMU", "not installed")


@pytest.mark.parametrize(("text", "words"), [
    ("axes: {scenario: [failover], grouping: [multibuss]}\n", ["grouping 'multibuss'"]),
    ("axes: {scenario: [failover]\n", ["not valid YAML", "line"]),
])
def test_broken_matrix_file(tmp_path: Path, text: str, words: list[str]) -> None:
    (tmp_path / "m.yaml").write_text(text)
    p = run_cli("matrix", str(tmp_path / "m.yaml"), "--output-dir", str(tmp_path / "out"),
                cwd=tmp_path)
    assert_one_sentence(p, 255, "m.yaml", *words)


def test_matrix_file_missing_and_bad_shard(tmp_path: Path) -> None:
    p = run_cli("matrix", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert_one_sentence(p, 255, "Cannot read matrix file", "nope.yaml")
    p = run_cli("matrix", "--shard", "3/2", "--list", cwd=tmp_path)
    assert_one_sentence(p, 255, "--shard", "I/N")


def test_matrix_on_an_unbuilt_tree(tmp_path: Path) -> None:
    tree = fake_tree(tmp_path / "linux", full_config(), built=False)
    (tmp_path / "m.yaml").write_text(f"kernels: [{tree}]\naxes: {{scenario: [failover]}}\n")
    p = run_cli("matrix", str(tmp_path / "m.yaml"), "--output-dir", str(tmp_path / "out"),
                "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert p.returncode == 255, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and str(tree) in p.stderr


def test_merge_of_something_else(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2]\n")
    p = run_cli("merge", str(tmp_path / "x.json"), "--output-dir", str(tmp_path / "out"),
                cwd=tmp_path)
    assert_one_sentence(p, 255, "x.json", "not a rapido-mpio matrix.json")
