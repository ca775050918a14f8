"""Real boots: Debian's default kernel, real multipath-tools, xfsprogs and udev, under QEMU.

Every verdict has its negative control: the same code path must come out FAIL when a path
really is lost for good, and the harness must end QEMU whatever happens.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rapido_mpio.config import REPO_ROOT

from .conftest import (
    cut_dir_with_test_scenarios,
    interrupt_with_qemus_running,
    last_result,
    qemu_processes_for,
    run_cli,
)

pytestmark = pytest.mark.integration


def test_failover_passes_on_default_kernel(out: Path) -> None:
    p = run_cli("boot", "--output-dir", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: PASS" in p.stdout
    result = last_result(out)
    checks = {c["name"]: c for c in result["checks"]}
    assert all(c["status"] == "PASS" for c in checks.values())
    assert sorted(checks) == sorted(["map_paths", "mounted", "path_failed", "io_after_fault",
                                     "paths_after_fault", "data_intact", "path_io", "umount",
                                     "kernel_log"])
    assert checks["paths_after_fault"]["observed"] == "1_active_1_failed"
    # which sdX is path0 depends on the order the guest finds the disks in
    down, up = re.fullmatch(r"down_(8:\d+)_\+0_up_(8:\d+)_\+\d+",
                            checks["path_io"]["observed"]).groups()  # type: ignore[union-attr]
    # the role the fault was aimed by (a path of the active group), then the cable pull,
    # timed, of the path it resolved to (which one depends on udev's order)
    target, action = result["actions"]
    assert target["action"] == "target" and target["args"][0] == "active"
    path = target["args"][2].removeprefix("paths=")
    assert action["action"] == "fail_path" and action["detail"] == f"drive_del l0p{path}"
    assert 0 < action["at"] < result["timings"]["verdict"]
    assert set(result["path_io"]) == {"before", "settled", "end"}
    io = result["path_io"]
    assert io["end"][up]["remapped"] > io["settled"][up]["remapped"]
    assert io["end"][down]["remapped"] == io["settled"][down]["remapped"]
    assert "/vmlinux-" in result["kernel"]["image"]  # Debian's kernel boots uncompressed (PVH)
    run = out / "last"
    assert "active ready" in (run / "multipath-before.txt").read_text()
    assert "failed faulty" in (run / "multipath-after.txt").read_text()
    assert "Failing path" in (run / "console.log").read_text()
    assert (run / "qemu-cmd.sh").read_text().startswith("#!/bin/sh")
    assert qemu_processes_for(out) == []


def test_all_paths_lost_is_a_fail(out: Path) -> None:
    """Negative control: both paths failed; the same checks must see it and say FAIL, and
    say what they saw."""
    # the scenario is chosen at boot: no new cut
    p = run_cli("boot", "--output-dir", str(out), "--scenario", "all-paths-lost")
    assert p.returncode == 1, p.stdout + p.stderr
    checks = {c["name"]: c for c in last_result(out)["checks"]}
    failed = {name for name, c in checks.items() if c["status"] == "FAIL"}
    assert failed == {"io_after_fault", "data_intact", "path_io"}
    assert "FAILED io_after_fault: writer_in_flight_exit_1" in p.stdout
    # both paths down is a settled state too, and the check says which
    assert checks["paths_after_fault"]["observed"] == "0_active_2_failed"
    assert checks["data_intact"]["observed"].startswith("unreadable_(want_")
    assert checks["path_io"]["observed"].endswith("up_paths_carried_0_(min_8)")
    assert "failed exactly as declared" in p.stdout
    assert qemu_processes_for(out) == []


def test_guest_that_never_reports_is_untestable(out: Path) -> None:
    run_cli("cut", "--output-dir", str(out))
    began = time.monotonic()
    p = run_cli("boot", "--output-dir", str(out), "--boot-timeout", "1")
    assert p.returncode == 125, p.stdout + p.stderr
    assert "never reached the scenario: timed out" in p.stdout
    assert time.monotonic() - began < 30
    assert qemu_processes_for(out) == []


def test_failover_is_stable_on_default_kernel(out: Path) -> None:
    """A good kernel PASSes every time, not once: six runs on one image (the
    default matrix boots failover four more times; the README gives the longer counts), two
    at a time as a --repeat boots them, each beside another: a run under load must PASS too."""
    p = run_cli("boot", "--output-dir", str(out), "--repeat", "6", timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "failover: 6/6 PASS" in p.stdout
    assert qemu_processes_for(out) == []


def test_failover_with_a_guest_side_offline_fault_passes(tmp_path: Path) -> None:
    p = run_cli("run", "--output-dir", str(tmp_path), "--scenario", "failover-offline")
    assert p.returncode == 0, p.stdout + p.stderr
    checks = {c["name"]: c for c in last_result(tmp_path)["checks"]}
    assert re.fullmatch(r"offline_[01]", checks["path_failed"]["observed"])
    assert re.fullmatch(r"down_8:\d+_\+0_up_8:\d+_\+\d+", checks["path_io"]["observed"])


@pytest.fixture(scope="module")
def test_cut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut_dir_with_test_scenarios(tmp_path_factory.mktemp("cut"))


@pytest.mark.parametrize("scenario, code", [("userspace-warning", 0), ("kernel-warning", 1),
                                            ("kernel-warning-allowed", 0)])
def test_only_kernel_warnings_fail_a_run(test_cut: Path, tmp_path: Path, scenario: str,
                                         code: int) -> None:
    p = run_cli("run", "--output-dir", str(tmp_path), "--cut-dir", str(test_cut),
                "--scenario", scenario)
    assert p.returncode == code, p.stdout + p.stderr
    # the userspace WARNING reached the kernel log, stamped with the user facility (8 + 4)
    kmsg = (tmp_path / "last" / "kmsg.txt").read_text()
    assert re.search(r"^<12>\[ *[\d.]+\] WARNING: option foo is deprecated \(userspace", kmsg,
                     re.M)
    kernel_log = next(c for c in last_result(tmp_path)["checks"] if c["name"] == "kernel_log")
    if scenario == "kernel-warning":
        assert kernel_log["status"] == "FAIL"
        assert "WARNING::_unknown_target_type" in kernel_log["observed"]
    else:
        assert kernel_log == {"name": "kernel_log", "status": "PASS", "observed": "clean"}


def test_hung_step_is_named_with_a_task_dump(test_cut: Path, tmp_path: Path) -> None:
    p = run_cli("run", "--output-dir", str(tmp_path), "--cut-dir", str(test_cut),
                "--scenario", "hang")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "hung in step write_to_suspended_map" in p.stdout
    result = last_result(tmp_path)
    assert result["hang"]["step"] == "write_to_suspended_map"
    dump = (tmp_path / "last" / "task-dump.txt").read_text()
    assert "Show Blocked State" in dump and "task:dd" in dump
    assert qemu_processes_for(tmp_path) == []


def test_scenario_that_hangs_is_a_fail(out: Path) -> None:
    p = run_cli("boot", "--output-dir", str(out), "--scenario-timeout", "1", "--console")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "scenario timed out" in p.stdout
    assert "Linux version" in p.stderr  # --console streamed the guest's console live
    assert last_result(out)["timed_out"] == "scenario"
    # where it stood when the host gave up: the kernel's list of blocked tasks
    assert "Show Blocked State" in (out / "last" / "task-dump.txt").read_text()
    assert qemu_processes_for(out) == []


def test_ctrl_c_ends_qemu(out: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rapido_mpio", "boot", "--output-dir",
                             str(out)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not qemu_processes_for(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert qemu_processes_for(out), "QEMU never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 255
    assert "interrupted; QEMU was stopped." in err and "Traceback" not in err
    assert qemu_processes_for(out) == []


@pytest.mark.parametrize("to_group", [False, True], ids=["repeat-alone", "terminal"])
def test_ctrl_c_ends_every_repeated_qemu(out: Path, to_group: bool) -> None:
    """--repeat boots two at a time, each in a forked child: Ctrl-C stops both and their
    QEMUs, whether the parent alone gets it or each child gets it first."""
    interrupt_with_qemus_running(["boot", "--output-dir", str(out), "--repeat", "4",
                                  "--vms", "2"], out, 2, to_group)


@pytest.fixture(scope="module")
def distro_as_build_tree(tmp_path_factory: pytest.TempPathFactory, out: Path) -> Path:
    """Debian's kernel laid out like a build tree with modules (symlinks), so the tree path
    (modules.order, staging, depmod) is exercised with real modules and a real boot."""
    from rapido_mpio.config import load

    pointer = load({}, environ={}).cache_dir / "kernels" / "linux-image-amd64.json"
    info = json.loads(pointer.read_text())
    root, release = Path(info["root"]), info["release"]
    moddir = root / "lib/modules" / release
    tree = tmp_path_factory.mktemp("linux")
    (tree / "Makefile").write_text("# stands in for a kernel build tree\n")
    (tree / ".config").symlink_to(root / "boot" / f"config-{release}")
    (tree / "arch/x86/boot").mkdir(parents=True)
    (tree / "arch/x86/boot/bzImage").symlink_to(root / "boot" / f"vmlinuz-{release}")
    (tree / "include/config").mkdir(parents=True)
    (tree / "include/config/kernel.release").write_text(release + "\n")
    order = (moddir / "modules.order").read_text().split()
    for name in ("modules.builtin", "modules.builtin.modinfo"):
        (tree / name).symlink_to(moddir / name)
    (tree / "modules.order").write_text(
        "".join(line.removeprefix("kernel/") + "\n" for line in order))
    for line in order:
        ko = tree / line.removeprefix("kernel/")
        ko.parent.mkdir(parents=True, exist_ok=True)
        ko.symlink_to(moddir / line)
    return tree


def test_build_tree_with_modules_passes(distro_as_build_tree: Path, tmp_path: Path) -> None:
    p = run_cli("run", "--output-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                env={"KERNEL_SRC": str(distro_as_build_tree)})
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"kernel tree {distro_as_build_tree}" in p.stderr
    staged = list((tmp_path / "cache" / "staged").glob("*/lib/modules/*/modules.dep"))
    assert len(staged) == 1 and "dm-multipath.ko" in staged[0].read_text()
    # nothing was written into the tree
    assert not list(distro_as_build_tree.glob("modules.dep*"))


def test_cut_is_reproducible_byte_for_byte(out: Path, tmp_path: Path) -> None:
    """Two cold cuts from separate caches (same kernel, same host files) give one image."""
    from rapido_mpio.config import load

    kernels = load({}, environ={}).cache_dir / "kernels"
    images = []
    for name in ("one", "two"):
        cache = tmp_path / f"cache-{name}"
        cache.mkdir()
        (cache / "kernels").symlink_to(kernels)
        p = run_cli("cut", "--cache-dir", str(cache), "--output-dir", str(tmp_path / name))
        assert p.returncode == 0, p.stderr
        layers = json.loads((tmp_path / name / "image" / "image.json").read_text())["layers"]
        assert len(layers) == 2 and all(str(cache) in layer for layer in layers)
        images.append([Path(layer).read_bytes() for layer in layers])
    assert images[0] == images[1]


def test_zstd_layers_boot(tmp_path: Path) -> None:
    """Compressed layers after the uncompressed scenario layer: the kernel reads them all."""
    p = run_cli("run", "--output-dir", str(tmp_path), "--compression", "zstd")
    assert p.returncode == 0, p.stdout + p.stderr
    layers = json.loads((tmp_path / "image" / "image.json").read_text())["layers"]
    assert all(Path(layer).read_bytes()[:4] == b"\x28\xb5\x2f\xfd" for layer in layers)
    assert (tmp_path / "last" / "scenario.cpio").read_bytes()[:6] == b"070701"


def test_flap_runs_on_a_timer_without_holding_the_guest(test_cut: Path, tmp_path: Path) -> None:
    """flap_path is acknowledged at once; the host then fails and restores the path on its
    own clock while the guest writes, and records each action with its time."""
    p = run_cli("run", "--output-dir", str(tmp_path), "--cut-dir", str(test_cut),
                "--scenario", "flap")
    assert p.returncode == 0, p.stdout + p.stderr
    actions = last_result(tmp_path)["actions"]
    assert [a["action"] for a in actions] == ["flap_path", "fail_path", "restore_path",
                                              "fail_path", "restore_path"]
    at = [a["at"] for a in actions[1:]]
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    assert all(0.8 < g < 1.6 for g in gaps), at  # fail, restore 1 s later, every 2 s
    assert actions[3]["detail"] == "drive_del l0p0g1"  # the restored path fails in its turn
    assert qemu_processes_for(tmp_path) == []
