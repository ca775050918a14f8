#!/usr/bin/env python3
"""Spike: boot once to "map ready", save the VM with QEMU migration to a file, restore it
per run, and run the scenario from there. A measurement, not part of the product.

  prepare   QEMU (the command line a run uses) with a stub scenario that waits for the
            host once multipathd has built the map; QMP migrate to exec:cat > FILE; quit
  restore   the same command line + -incoming "exec:cat FILE", fresh LUN files, new
            sockets; the host sends the real scenario (env + steps) over ttyS1 and then
            follows the run exactly as vm.boot does (faults by drive_del, verdict.decide)
  compare   per round, interleaved: the floor (bench.py's reboot-at-once init), a normal
            boot (`rapido-mpio boot`), a restore; QEMU-start-relative times and ratios

Usage: bench/snapshot_spike.py --kernel-build TREE [--rounds 5] [--scenario failover]
       [--env FAULT=offline] [--work /tmp/snap-spike]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import importlib.util
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rapido_mpio import cpio, image, qemu, scenario, verdict, vm  # noqa: E402
from rapido_mpio.config import load  # noqa: E402
from rapido_mpio.console import Channel  # noqa: E402
from rapido_mpio.faults import Faults  # noqa: E402
from rapido_mpio.monitor import Monitor  # noqa: E402
from rapido_mpio.topology import Topology  # noqa: E402

# Sourced by init where the scenario would be, i.e. after udev settle: wait for the map,
# report, block on ttyS1 until the host sends "mpio-go <base64(gzip(env + steps))>".
# What the guest reports after the restore: its uptime and wall clock (did they jump?),
# and a few bytes of urandom (is every restore's CRNG the same?).
STUB = r"""
mpio_wait_for 30 mpio_have_map 0 || mpio_log "no map before the snapshot"
mpio_say "MAPREADY $(cut -d' ' -f1 /proc/uptime) $(date +%s)"
go=$(head -n 1 <&3)
rnd=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
mpio_say "RESUMED $(cut -d' ' -f1 /proc/uptime) $(date +%s) $rnd"
case $go in mpio-go\ *) ;; *) mpio_log "bad go line: $go"; exit 1 ;; esac
echo "${go#mpio-go }" | base64 -d | gunzip > /run/mpio/run.sh
mpio_block snap-paths multipathd show paths
. /run/mpio/run.sh
"""


def run_script(sc: scenario.Scenario, reconfigure: bool) -> str:
    """The per-run part, delivered over the channel: env, the multipath conf.d snippet
    (applied with multipathd reconfigure, waiting until the map's table shows the
    selector), then the steps."""
    env = "".join(f"export {k}={image._shell_quote(v)}\n"
                  for k, v in sorted(sc.guest_env().items()))
    conf = ""
    if reconfigure:
        selector = next(iter(sc.selectors()), "round-robin")
        conf = ("mkdir -p /etc/multipath/conf.d\n"
                "cat > /etc/multipath/conf.d/scenario.conf <<'MPIOEOF'\n" + sc.multipath +
                "MPIOEOF\n"
                "t0=$(mpio_uptime_cs)\n"
                "multipathd reconfigure >/dev/null\n"
                f"mpio_wait_for 20 sh -c 'dmsetup table | grep -q \" {selector} \"'"
                f" || mpio_log 'selector {selector} not in the table'\n"
                "mpio_say \"RECONF $(($(mpio_uptime_cs) - t0))0ms "
                "$(dmsetup table | awk '{print $9}')\"\n")
    return env + conf + sc.steps_script


def stub_layer(sc: scenario.Scenario) -> bytes:
    """The scenario layer with STUB in place of the steps (env as the snapshot boots it)."""
    stub = dataclasses_replace(sc, steps_script=STUB)
    return image.scenario_layer(stub)


def dataclasses_replace(obj: Any, **kw: Any) -> Any:
    import dataclasses
    return dataclasses.replace(obj, **kw)


class Scratch:
    """Per-QEMU scratch dir: fresh LUN files, socket pairs, the rendered argv."""

    def __init__(self, root: Path, img: image.Image, sc: scenario.Scenario, cfg: Any,
                 initrd: Path, stack: contextlib.ExitStack) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for f in root.iterdir():
            if f.suffix in (".img", ".sock", ".log"):
                f.unlink()
        self.root = root
        self.topology = Topology.build(sc.shape, str(root), cfg.disk_size)
        for disk in self.topology.disks:
            with open(disk, "wb") as lun:
                lun.truncate(self.topology.lun_mib << 20)
        self.proto, self.proto_qemu = vm._socket_pair(stack)
        self.qmp, self.qmp_qemu = vm._socket_pair(stack)
        accel = qemu.detect_accel(cfg.accel)
        machine = qemu.Machine(
            binary=qemu.find_binary(cfg.qemu), accel=accel.name, cpu=accel.cpu,
            memory=cfg.memory, cpus=cfg.cpus,
            bios=str(qemu.QBOOT) if qemu.QBOOT.exists() else None,
            kernel=str(img.kernel_image), initrd=str(initrd),
            cmdline=" ".join(filter(None, [qemu.BASE_CMDLINE, accel.cmdline,
                                           cfg.kernel_cmdline])),
            console_log=str(root / "console.log"),
            proto_socket=self.proto_qemu.fileno(), qmp_socket=self.qmp_qemu.fileno(),
            topology=self.topology)
        self.argv = qemu.render(cfg.templates_dir, machine)

    def start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """QEMU with its ends of the sockets, which we then close (as vm.boot does)."""
        fds = (self.proto_qemu.fileno(), self.qmp_qemu.fileno())
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    pass_fds=fds)
        self.proto_qemu.close()
        self.qmp_qemu.close()
        return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lun_written(disk: str) -> int:
    """Non-zero bytes in a LUN file (the snapshot assumes the guest wrote nothing yet)."""
    nonzero = 0
    with open(disk, "rb") as f:
        while chunk := f.read(1 << 22):
            nonzero += len(chunk) - chunk.count(0)
    return nonzero


def prepare(img: image.Image, sc: scenario.Scenario, cfg: Any, work: Path,
            state: Path) -> dict[str, Any]:
    initrd = work / "snap-initrd"
    with open(initrd, "wb") as out:  # stub layer first, then the cached layers (as assemble)
        out.write(stub_layer(sc))
        for layer in img.layers:
            out.write(layer.read_bytes())
    with contextlib.ExitStack() as stack:
        s = Scratch(work / "prepare", img, sc, cfg, initrd, stack)
        started = time.monotonic()
        proc = s.start(s.argv, s.root / "qemu.log")
        stack.callback(stop, proc, 3.0)
        proto, qmp = s.proto, s.qmp
        monitor = Monitor(qmp, timeout=60)
        stack.callback(monitor.close)
        log = stack.enter_context(open(s.root / "protocol.log", "w"))
        channel = Channel(proto, started, log)
        messages = []
        while True:
            m = channel.receive(started + 120)
            messages.append(m)
            if m.kind == "MAPREADY":
                break
        ready = m.at
        guest_uptime = float(m.text.split()[0])
        monitor.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        t0 = time.monotonic()
        monitor.execute("migrate", {"uri": f"exec:cat > {state}"})
        while True:
            st = monitor.execute("query-migrate")
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.01)
        save = time.monotonic() - t0
        assert st["status"] == "completed", st
        with contextlib.suppress(Exception):
            monitor.execute("quit")
        stop(proc, 5)
        written = lun_written(s.topology.disks[0])
        return {"map_ready_s": round(ready, 3), "guest_uptime_at_map_ready": guest_uptime,
                "save_s": round(save, 3), "state_mb": round(state.stat().st_size / 1e6, 1),
                "lun_nonzero_bytes_before_snapshot": written,
                "ram_transferred_mb": round(st.get("ram", {}).get("transferred", 0) / 1e6, 1),
                "messages": messages}


def restore(img: image.Image, sc: scenario.Scenario, cfg: Any, work: Path, state: Path,
            before: list[Any], n: int, reconfigure: bool = False) -> dict[str, Any]:
    run_dir = work / f"restore-{n}"
    with contextlib.ExitStack() as stack:
        s = Scratch(run_dir, img, sc, cfg, work / "snap-initrd", stack)
        argv = [*s.argv, "-incoming", f"exec:cat {state}"]
        record = vm.RunRecord(run_dir, run_dir / "console.log", "TCG (restored)")
        started = time.monotonic()
        proc = s.start(argv, run_dir / "qemu.log")
        proto, qmp = s.proto, s.qmp
        monitor = Monitor(qmp, timeout=60)
        while monitor.execute("query-status")["status"] != "running":
            time.sleep(0.01)  # -incoming without -S: QEMU starts the guest once loaded
        running = time.monotonic() - started
        log = stack.enter_context(open(run_dir / "protocol.log", "w"))
        channel = Channel(proto, started, log)
        wall_at_start = time.time() - (time.monotonic() - started)
        payload = base64.b64encode(gzip.compress(run_script(sc, reconfigure).encode())).decode()
        proto.sendall(f"mpio-go {payload}\n".encode())
        record.messages.extend(before)  # START .. SCENARIO came before the snapshot
        faults = Faults(monitor, s.topology, started)
        try:
            vm._follow(channel, monitor, faults, cfg, record, started)
        finally:
            record.actions = faults.actions
            monitor.close()
        vm._reap(proc, record, started)
    resumed_wall = 0.0
    for m in record.messages:
        if m.kind == "RESUMED":
            resumed_wall = wall_at_start + m.at
    v = verdict.decide(record, sc.name, sc.kernel_log_allow, sc.expect_fail)
    resumed = next((m for m in record.messages if m.kind == "RESUMED"), None)
    reconf = next((m.text for m in record.messages if m.kind == "RECONF"), None)
    guest_wall_lag = None
    if resumed:  # the guest's wall clock against the host's, when it said RESUMED
        guest_wall_lag = round(resumed_wall - int(resumed.text.split()[1]), 1)
    vline = next((m for m in record.messages if m.kind == "VERDICT"), None)
    (run_dir / "verdict.json").write_text(json.dumps(v.to_json(), indent=1))
    return {"result": v.result, "reason": v.reason,
            "failed": [c.name for c in v.failed],
            "running_s": round(running, 3),
            "resumed_s": round(resumed.at, 3) if resumed else None,
            "resumed": resumed.text if resumed else None,
            "guest_wall_clock_behind_s": guest_wall_lag, "reconf": reconf,
            "events": [f"{m.at:7.3f} {m.kind} {m.text[:60]}" for m in record.messages
                       if m.kind in ("RESUMED", "STEP", "CHECK", "EVENT", "ACTION",
                                     "VERDICT", "RECONF") and m.at < 1e5
                       and m not in before],
            "verdict_s": round(vline.at, 3) if vline else None,
            "exit_s": round(record.exited_at or 0, 3),
            "actions": [a.to_json() for a in record.actions],
            "snap_paths": record.blocks.get("snap-paths", [])}


def normal(kb: str, work: Path, extra: list[str]) -> dict[str, Any]:
    out = work / "normal-out"
    subprocess.run([sys.executable, "-m", "rapido_mpio", "boot", "--kernel-build", kb,
                    "--output-dir", str(out), *extra], cwd=REPO, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    r = json.loads((out / "last" / "result.json").read_text())
    return {"result": r["result"], **{k: r["timings"][k] for k in
                                      ("scenario_start", "verdict", "qemu_exit")}}


def floor(kb: str, work: Path) -> float:
    spec = importlib.util.spec_from_file_location("bench_bench", REPO / "bench" / "bench.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return float(mod.bench_floor(Path(kb), 1, work))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel-build", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scenario", default="failover")
    ap.add_argument("--env", default="", help="scenario env overrides, NAME=V,NAME=V")
    ap.add_argument("--restore-selector", default="",
                    help="restores run under this path selector (conf.d + multipathd "
                    "reconfigure after the restore); the snapshot keeps the scenario's")
    ap.add_argument("--work", type=Path, default=Path("/tmp/snap-spike"))
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    extra = ["--scenario", args.scenario] + (["--scenario-env", args.env] if args.env else [])
    cfg = load({"kernel_build": args.kernel_build, "scenario": args.scenario,
                "output_dir": str(work / "normal-out")})
    subprocess.run([sys.executable, "-m", "rapido_mpio", "cut", "--kernel-build",
                    args.kernel_build, "--output-dir", str(work / "normal-out"), *extra],
                   cwd=REPO, check=True, stderr=subprocess.DEVNULL)
    img = image.load_image(work / "normal-out" / "image")
    sc = scenario.load(cfg.cut_dir, args.scenario).with_env(args.env).with_policy(
        cfg.path_selector, cfg.path_grouping)
    sc_run = sc.with_policy(args.restore_selector, "scenario") if args.restore_selector \
        else sc
    state = work / "vmstate.bin"
    prep = prepare(img, sc, cfg, work, state)
    before = prep.pop("messages")
    print("prepare:", json.dumps(prep), flush=True)
    rounds: list[dict[str, Any]] = []
    for n in range(args.rounds):
        r = {"floor_s": round(floor(args.kernel_build, work), 3),
             "normal": normal(args.kernel_build, work, extra + (
                 ["--path-selector", args.restore_selector] if args.restore_selector
                 else [])),
             "restore": restore(img, sc_run, cfg, work, state, before, n,
                                reconfigure=bool(args.restore_selector))}
        rounds.append(r)
        print(f"round {n}:", json.dumps(r), flush=True)
    med = statistics.median
    fl = med(r["floor_s"] for r in rounds)
    nv = med(r["normal"]["verdict"] for r in rounds if r["normal"]["verdict"])
    rv = med(r["restore"]["verdict_s"] for r in rounds if r["restore"]["verdict_s"])
    summary = {
        "prepare": prep, "floor_s": fl, "normal_verdict_s": nv, "restore_verdict_s": rv,
        "normal_scenario_start_s": med(r["normal"]["scenario_start"] for r in rounds),
        "normal_scenario_phase_s": med(r["normal"]["verdict"] - r["normal"]["scenario_start"]
                                       for r in rounds),
        "restore_scenario_phase_s": med(r["restore"]["verdict_s"] - r["restore"]["resumed_s"]
                                        for r in rounds if r["restore"]["verdict_s"]),
        "restore_running_s": med(r["restore"]["running_s"] for r in rounds),
        "restore_over_normal": round(rv / nv, 3), "normal_over_floor": round(nv / fl, 2),
        "restore_over_floor": round(rv / fl, 2),
        "normal_pass": sum(r["normal"]["result"] == "PASS" for r in rounds),
        "restore_pass": sum(r["restore"]["result"] == "PASS" for r in rounds),
        "rounds": len(rounds)}
    print("summary:", json.dumps(summary, indent=1))
    (work / "summary.json").write_text(json.dumps({"summary": summary, "rounds": rounds},
                                                  indent=1))
    return 0


if __name__ == "__main__":
    _ = (io, os, socket, cpio)  # kept for poking at the prototype interactively
    sys.exit(main())
