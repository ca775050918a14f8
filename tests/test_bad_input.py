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
    ("#: description: x\n#: lun_errors: [{lun: 0, op: write, errno: ENOSPACE, sector: 8}]\n",
     ["lun_errors", "'ENOSPACE' is not an errno name"]),
    ("#: description: x\n#: lun_errors: [{lun: 1, op: write, errno: EIO, sector: 8}]\n",
     ["lun_errors", "LUN 1 is not one of the 1 LUNs"]),
    ("#: description: x\n#: lun_errors: [{lun: 0, op: trim, errno: EIO, sector: 8}]\n",
     ["lun_errors", "operation 'trim'"]),
    ("#: description: x\n#: lun_errors: [{lun: 0, errno: EIO, sector: 8}]\n",
     ["lun_errors", "must be a list of"]),
])
def test_broken_scenario_file(tmp_path: Path, header: str, words: list[str]) -> None:
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True)
    (cut / "scenarios" / "x.sh").write_text(header + "mpio_check x PASS ok\n")
    p = run_cli("cut", "--cut-dir", str(cut), "--scenario", "x", cwd=tmp_path)
    assert_one_sentence(p, 255, *words)


def test_lun_error_past_the_lun_is_refused_before_boot(tmp_path: Path) -> None:
    """A rule blkdebug would never fire would make a scenario's target error vanish."""
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True)
    (cut / "scenarios" / "x.sh").write_text(
        "#: description: x\n#: lun_errors: [{lun: 0, op: read, errno: ENODATA, "
        "sector: 700000}]\nmpio_check x PASS ok\n")
    p = run_cli("run", "--cut-dir", str(cut), "--scenario", "x", "--output-dir",
                str(tmp_path / "out"), cwd=tmp_path)
    assert_one_sentence(p, 255, "sector 700000 is outside the LUN of 320 MiB", "disk_size")
    assert not (tmp_path / "out").exists()


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


# issue 15, case 10: every bad file or value is one sentence and 255 before anything boots

def alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" as one flow mapping: nine lists of nine aliases of the last."""
    lists = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    lists += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "{" + ", ".join(f"K{i}: {v}" for i, v in enumerate(lists)) + "}"


def _reader_run(tmp_path: Path, reader: str, content: bytes) -> subprocess.CompletedProcess[str]:
    """Put `content` where `reader` reads it, and run the command that reads it first."""
    if reader == "config":
        (tmp_path / "rapido-mpio.yaml").write_bytes(content)
        return run_cli("cut", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    if reader == "scenario":
        (tmp_path / "cut/scenarios").mkdir(parents=True)
        (tmp_path / "cut/scenarios/x.sh").write_bytes(content)
        return run_cli("cut", "--cut-dir", str(tmp_path / "cut"), "--scenario", "x",
                       "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    if reader == "manifest":
        (tmp_path / "cut/scenarios").mkdir(parents=True)
        (tmp_path / "cut/scenarios/x.sh").write_text("#: description: x\n#: image: m\ntrue\n")
        (tmp_path / "cut/m.yaml").write_bytes(content)
        return run_cli("cut", "--cut-dir", str(tmp_path / "cut"), "--scenario", "x",
                       "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    (tmp_path / "m.yaml").write_bytes(content)
    return run_cli("matrix", str(tmp_path / "m.yaml"), "--list", cwd=tmp_path)


BOMB = alias_bomb()


@pytest.mark.parametrize(("reader", "content", "words"), [
    ("config", b"memory: 1024\nqemu: \xff\xfe\n", ["config file", "not UTF-8"]),
    ("scenario", b"#: description: \xc3\x28\ntrue\n", ["scenario file", "not UTF-8"]),
    ("matrix", b"axes: {scenario: [\x80]}\n", ["matrix file", "not UTF-8"]),
    ("config", f"kernel_src: {BOMB}\n".encode(), ["rapido-mpio.yaml", "YAML aliases"]),
    ("scenario", f"#: description: x\n#: env: {BOMB}\ntrue\n".encode(),
     ["x.sh", "YAML aliases"]),
    ("matrix", f"include: [{{scenario: failover, env: {BOMB}}}]\n".encode(),
     ["m.yaml", "YAML aliases"]),
    ("config", b"qemu: x\n" + b"#" * (1 << 20), ["larger than 1024 KiB"]),
    ("manifest", b"busybox: \xff\n", ["image manifest", "not UTF-8"]),
    ("manifest", f"binaries: {BOMB}\n".encode(), ["m.yaml", "YAML aliases"]),
])
def test_binary_huge_and_alias_bomb_files(tmp_path: Path, reader: str, content: bytes,
                                          words: list[str]) -> None:
    """Were a UnicodeDecodeError traceback, and a 351 MB "sentence" or a MemoryError."""
    p = _reader_run(tmp_path, reader, content)
    assert_one_sentence(p, 255, *words)
    assert len(p.stderr) < 400
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("text", "words"), [
    ('output_dir: "/tmp/a\\0b"\n', ["output_dir", "control characters", "'\\x00'"]),
    ('kernel_src: "/src/linux\\n"\n', ["kernel_src", "control characters", "'\\n'"]),
    ('scenario_env: "SEED=1\\u2028x"\n', ["scenario_env", "control characters"]),
])
def test_control_characters_in_settings(tmp_path: Path, text: str, words: list[str]) -> None:
    """A NUL in a path was a ValueError traceback."""
    (tmp_path / "rapido-mpio.yaml").write_text(text)
    p = run_cli("cut", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_sentence(p, 255, *words)


@pytest.mark.parametrize(("args", "words"), [
    (["--boot-timeout", "nan"], ["boot_timeout", "from 1 to 86400", "'nan'"]),
    (["--boot-timeout", "inf"], ["boot_timeout", "from 1 to 86400"]),
    (["--scenario-timeout", "nan"], ["scenario_timeout", "from 1 to 86400"]),
    (["--scenario-timeout=-inf"], ["scenario_timeout", "from 1 to 86400"]),
    (["--disk-size", "100000000000000000000"], ["disk_size", "from 1 to 1048576"]),
    (["--disk-size", "400000000"], ["disk_size", "from 1 to 1048576"]),
    (["--memory", "100000000000000000000000000"], ["memory", "from 256 to 1048576"]),
    (["--cpus", "1000"], ["cpus", "from 1 to 255"]),
])
def test_numbers_out_of_bounds_are_refused_before_boot(tmp_path: Path, args: list[str],
                                                       words: list[str]) -> None:
    """nan timeouts exited 125 (a bisect skip) or 1 (a FAIL); a huge disk_size was an
    OverflowError or EFBIG from the LUN file, a huge memory went to QEMU."""
    out = tmp_path / "out"
    _fake_image(out)
    p = run_cli("boot", "--output-dir", str(out), "--accel", "tcg", *args, cwd=tmp_path)
    assert_one_sentence(p, 255, *words)
    assert not (out / "runs").exists()


@pytest.mark.parametrize(("topology", "words"), [
    ("{luns: 1, paths: 2, lun_mib: 100000000000000000000000}", ["lun_mib must be 1 to 1048576"]),
    ("{luns: 1, paths: 2, lun_mib: 400000000}", ["lun_mib must be 1 to 1048576"]),
    ("{luns: 1, paths: 2, lun_mib: 1e23}", ["whole numbers"]),
])
def test_huge_lun_in_a_scenario_is_refused_before_boot(tmp_path: Path, topology: str,
                                                       words: list[str]) -> None:
    """Were an OverflowError or EFBIG traceback while making the LUN files."""
    out = tmp_path / "out"
    _fake_image(out)
    cut = tmp_path / "cut"
    (cut / "scenarios").mkdir(parents=True)
    (cut / "scenarios" / "x.sh").write_text(f"#: description: x\n#: topology: {topology}\n"
                                           "mpio_check x PASS ok\n")
    p = run_cli("boot", "--output-dir", str(out), "--cut-dir", str(cut), "--scenario", "x",
                "--accel", "tcg", cwd=tmp_path)
    assert_one_sentence(p, 255, *words)
    assert not (out / "runs").exists()


def test_deep_matrix_json_given_to_merge(tmp_path: Path) -> None:
    """Was a RecursionError traceback."""
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    p = run_cli("merge", str(tmp_path / "deep.json"), "--output-dir", str(tmp_path / "out"),
                cwd=tmp_path)
    assert_one_sentence(p, 255, "deep.json", "not a rapido-mpio matrix.json", "too deeply")


@pytest.mark.parametrize("entry", [
    "{scenario: offline-one-by-one, env: {KEEP: '1,2'}}",
    "{scenario: failover, fault: 'fail_path,offline'}",
])
def test_matrix_value_with_a_comma_is_refused_by_list(tmp_path: Path, entry: str) -> None:
    """Passed --list, then broke every run: the value goes to the child in
    --scenario-env NAME=VALUE,NAME=VALUE."""
    (tmp_path / "m.yaml").write_text(f"include: [{entry}]\n")
    p = run_cli("matrix", str(tmp_path / "m.yaml"), "--list", cwd=tmp_path)
    assert_one_sentence(p, 255, "m.yaml", "without a comma")


def test_kernel_at_the_root_has_a_name(tmp_path: Path) -> None:
    """kernels: ["/"] gave an empty kernel id (ids ending in "/")."""
    (tmp_path / "m.yaml").write_text('kernels: ["/"]\naxes: {scenario: [failover]}\n')
    p = run_cli("matrix", str(tmp_path / "m.yaml"), "--list", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["failover/-/-/-/root"]


# issue 15, case 11: a newline in a value became QEMU arguments

def test_newline_in_kernel_cmdline_never_reaches_qemu(tmp_path: Path) -> None:
    """--kernel-cmdline $'quiet\\n-device\\n...' added a -device to QEMU's argv."""
    out = tmp_path / "out"
    _fake_image(out)
    called = tmp_path / "qemu-argv"
    stand_in = tmp_path / "qemu"
    stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {called}\nexit 1\n')
    stand_in.chmod(0o755)
    p = run_cli("boot", "--output-dir", str(out), "--accel", "tcg", "--qemu", str(stand_in),
                "--kernel-cmdline", "quiet\n-device\nvirtio-net-pci", cwd=tmp_path)
    assert_one_sentence(p, 255, "kernel_cmdline", "control characters", "'\\n'")
    assert not called.exists() and not (out / "runs").exists()
