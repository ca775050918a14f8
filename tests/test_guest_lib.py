"""The guest's helper library, run with the host's busybox: the lines it sends are the ones
the host parses, its settled path-state check waits out a flap and reports one that never
settles, and its per-path I/O check tells a quiet failed path from a busy one."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from rapido_mpio.config import REPO_ROOT
from rapido_mpio.verdict import parse_check, parse_verdict_line

LIB = REPO_ROOT / "cut/rootfs/usr/lib/mpio/lib.sh"


def guest_sh(script: str, tmp_path: Path, **env: str) -> str:
    """Run `script` in busybox sh with lib.sh sourced; fd 3 (the host channel) is a file."""
    channel = tmp_path / "channel"
    full = (f"exec 3>{channel}\nMPIO_RUN={tmp_path}\nMPIO_SCENARIO=failover\n"
            f". {LIB}\n{script}\n")
    subprocess.run(["/bin/busybox", "sh", "-c", full], check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", **env})
    return channel.read_text()


def busybox_only(tmp_path: Path, *applets: str) -> str:
    """A PATH of busybox's applets only, as in the image (the host's awk is another)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for applet in applets:
        (bin_dir / applet).symlink_to("/bin/busybox")
    return str(bin_dir)


def checks(channel: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in channel.splitlines():
        if line.startswith("@@MPIO:CHECK "):
            c = parse_check(line.removeprefix("@@MPIO:CHECK "))
            found[c.name] = (c.status, c.observed)
    return found


def test_verdict_line_is_what_the_host_parses(tmp_path: Path) -> None:
    out = guest_sh('mpio_check map_paths PASS "2 active"\n'
                   'mpio_expect data_intact abc "a,b=c d"\n'
                   "mpio_verdict", tmp_path)
    line = next(ln for ln in out.splitlines() if ln.startswith("@@MPIO:VERDICT "))
    assert parse_verdict_line(line.removeprefix("@@MPIO:VERDICT ")) == ("failover", "FAIL", 2)
    found = checks(out)
    assert found["map_paths"] == ("PASS", "2_active")
    assert found["data_intact"][0] == "FAIL"
    assert " " not in found["data_intact"][1] and "," not in found["data_intact"][1]


def test_no_checks_is_a_fail(tmp_path: Path) -> None:
    out = guest_sh("mpio_verdict", tmp_path)
    assert "@@MPIO:CHECK scenario_ran FAIL no_checks_recorded" in out
    assert "@@MPIO:VERDICT failover FAIL 1" in out


def test_a_check_whose_prerequisite_failed_is_skipped_not_passed(tmp_path: Path) -> None:
    out = guest_sh("mpio_expect mounted yes no\n"
                   "if mpio_requires data_intact mounted; then mpio_check data_intact PASS x; fi\n"
                   "mpio_verdict", tmp_path)
    assert checks(out)["data_intact"] == ("SKIP", "mounted_failed")
    assert "@@MPIO:VERDICT failover FAIL 2" in out


@pytest.mark.parametrize("uptime, cs", [("0.07 1.00", 7), ("0.79 0.1", 79),
                                        ("12.34 20.00", 1234), ("100.00 1", 10000)])
def test_uptime_in_hundredths(tmp_path: Path, uptime: str, cs: int) -> None:
    (tmp_path / "uptime").write_text(uptime + "\n")
    out = guest_sh('echo "$(mpio_uptime_cs)" >&3', tmp_path,
                   MPIO_UPTIME_FILE=str(tmp_path / "uptime"))
    assert out.strip() == str(cs)


DMSETUP = "0 655360 multipath 2 0 0 0 1 1 A 0 2 0 8:0 {} 3 8:16 A 0"
MULTIPATHD = "mpatha 8:0 {}\nmpatha 8:16 active ready\n[orphan] 8:32 undef ready"


def fake_tools(states: list[tuple[str, str]], tmp_path: Path) -> str:
    """dmsetup and multipathd as shell functions: each call of mpio_path_states takes the
    next sample, (kernel state of 8:0, multipathd's view of 8:0); the last one repeats."""
    for i, (kernel, daemon) in enumerate(states):
        (tmp_path / f"dm{i}").write_text(DMSETUP.format(kernel) + "\n")
        (tmp_path / f"mpd{i}").write_text(MULTIPATHD.format(daemon) + "\n")
    last = len(states) - 1
    return f"""
echo 0 > {tmp_path}/n
sample() {{ n=$(cat {tmp_path}/n); [ "$n" -le {last} ] || n={last}; echo "$n"; }}
dmsetup() {{ cat {tmp_path}/dm$(sample); }}
multipathd() {{ cat {tmp_path}/mpd$(sample); echo $(($(cat {tmp_path}/n) + 1)) > {tmp_path}/n; }}
MPIO_CHECKINT=1
"""


def test_path_states_reads_both_views(tmp_path: Path) -> None:
    out = guest_sh(fake_tools([("F", "active ready")], tmp_path)
                   + 'mpio_path_states mpatha >&3', tmp_path)
    assert out.splitlines() == ["8:0 F A", "8:16 A A"]


def test_settle_waits_out_a_flap_and_reports_the_settled_value(tmp_path: Path) -> None:
    """The kernel fails the path, multipathd reinstates it, the kernel fails it again: the
    sample in the middle would have read 2 active, and the check must not judge it."""
    flap = [("A", "active ready"), ("F", "active ready"), ("A", "active ready"),
            ("F", "failed ready"), ("F", "failed faulty")]
    out = guest_sh(fake_tools(flap, tmp_path)
                   + "mpio_settle paths_after_fault mpatha 1 1 10", tmp_path)
    assert checks(out)["paths_after_fault"] == ("PASS", "1_active_1_failed")
    assert (tmp_path / "settled").read_text().split("\n")[0] == "8:0 F F"


def test_settle_that_never_settles_fails_with_the_transitions(tmp_path: Path) -> None:
    flap = [("A", "active ready"), ("F", "active ready")] * 3 + [("A", "active ready")]
    out = guest_sh(fake_tools(flap, tmp_path)
                   + "mpio_settle paths_after_fault mpatha 1 1 1 || true", tmp_path)
    status, observed = checks(out)["paths_after_fault"]
    assert status == "FAIL"
    assert "not_settled_in_1s" in observed
    assert "8:0_kernel_A>F>A>F>A>F>A_multipathd_A" in observed


def test_path_io_judges_the_failed_path_and_the_survivors(tmp_path: Path) -> None:
    (tmp_path / "settled").write_text("8:0 F F\n8:16 A A\n")
    (tmp_path / "io-settled").write_text("8:0 remapped=40 iorequest=41 ioerr=9 overrun=0\n"
                                         "8:16 remapped=60 iorequest=60 ioerr=0 overrun=0\n")
    (tmp_path / "io-quiet").write_text("8:0 remapped=40 iorequest=42 ioerr=10 overrun=0\n"
                                       "8:16 remapped=100 iorequest=100 ioerr=0 overrun=0\n")
    (tmp_path / "io-busy").write_text("8:0 remapped=117 iorequest=42 ioerr=10 overrun=0\n"
                                      "8:16 remapped=100 iorequest=100 ioerr=0 overrun=0\n")
    out = guest_sh("mpio_check_path_io good settled quiet\n"
                   "mpio_check_path_io bad settled busy", tmp_path,
                   IO_MARGIN="2", IO_MIN="8")
    found = checks(out)
    assert found["good"] == ("PASS", "down_8:0_+0_up_8:16_+40")
    assert found["bad"][0] == "FAIL"
    assert "down_path_8:0_got_77_(max_2)" in found["bad"][1]


def test_shuffle_replays_from_its_seed(tmp_path: Path) -> None:
    """offline-one-by-one's order: the same seed gives the same order (with the image's
    busybox awk), so a failure can be replayed; other seeds give other orders."""
    path = busybox_only(tmp_path, "awk", "seq", "sort")

    def order(seed: int) -> str:
        channel = guest_sh(f'mpio_shuffle {seed} 8 | mpio_send order', tmp_path,
                           PATH=path)
        return " ".join(ln.split()[-1] for ln in channel.splitlines() if " order " in ln)

    first = order(43097)
    assert sorted(first.split()) == [str(i) for i in range(8)]
    assert order(43097) == first
    assert len({order(seed) for seed in range(1, 6)}) > 1


def test_an_ack_survives_a_child_exiting_mid_line(tmp_path: Path) -> None:
    """A background writer that ends while the host's ack is half-way in must not cost the
    ack its first bytes (busybox ash's read builtin loses them on SIGCHLD)."""
    host, guest = socket.socketpair()
    script = (f"exec 3<&{guest.fileno()}\nMPIO_RUN={tmp_path}\nMPIO_SCENARIO=failover\n"
              f". {LIB}\nsleep 0.3 &\nmpio_signal 'fail_path 0 1' && echo acked\n")
    with host, guest, subprocess.Popen(["/bin/busybox", "sh", "-c", script],
                                       pass_fds=(guest.fileno(),), stdout=subprocess.PIPE,
                                       env={"PATH": "/usr/bin:/bin"}, text=True) as sh:
        host.settimeout(10)
        assert host.recv(100) == b"@@MPIO:EVENT fail_path 0 1\n"
        host.sendall(b"mpio-ack fail")
        time.sleep(1)  # the background child exits meanwhile
        host.sendall(b"_path 0 1\n")
        out, _ = sh.communicate(timeout=10)
    assert out.splitlines()[-1] == "acked", out


# dmsetup status of a 3-path map under failover grouping, one path per group: service-time
# (2 info words per path), round-robin (none); features and a hardware handler to skip
GROUPS = {
    "st-group2-current": "0 655360 multipath 2 0 0 0 3 2 E 0 1 2 8:0 A 0 0 1 "
                         "A 0 1 2 8:16 A 0 0 1 E 0 1 2 8:32 A 1 0 1",
    "rr-no-io-yet": "0 655360 multipath 2 0 0 1 alua 3 3 E 0 1 0 8:0 A 0 "
                    "E 0 1 0 8:16 F 2 E 0 1 0 8:32 A 0",
    "rr-multibus": "0 655360 multipath 2 0 0 0 1 1 A 0 3 0 8:0 F 1 8:16 A 0 8:32 A 0",
    # historical-service-time: the group's selector status is "2 WEIGHT THRESHOLD", each
    # path's three numbers (service time, outstanding, stale after)
    "hst-multibus": "0 655360 multipath 2 0 0 0 1 1 A 2 10 5 3 3 8:0 F 1 0 0 0 "
                    "8:16 A 0 17 0 2 8:32 A 0 9 1 2",
}


def groups_guest(status: str, tmp_path: Path) -> str:
    """dmsetup answers `status`; LUN 0's paths 0, 1, 2 are 8:0, 8:16, 8:32 (udev found them
    in that order here: the roles must not depend on it, so the tests shuffle the devices
    across groups instead)."""
    (tmp_path / "topology").write_text("0 0 W 0:0\n0 1 W 1:0\n0 2 W 2:0\n")
    return f"""
MPIO_TOPOLOGY={tmp_path}/topology
dmsetup() {{ echo '{status}'; }}
mpio_lun_map() {{ echo mpatha; }}
mpio_path_dev() {{ echo "8:$(($2 * 16))"; }}
mpio_signal() {{ echo "SIGNAL $1" >&3; }}
"""


def test_groups_are_read_whatever_the_selector_reports(tmp_path: Path) -> None:
    out = guest_sh(groups_guest(GROUPS["st-group2-current"], tmp_path)
                   + "mpio_groups mpatha >&3; mpio_active_group mpatha >&3", tmp_path)
    assert out.splitlines() == ["1 E 8:0 A 0 2", "2 A 8:16 A 0 2", "3 E 8:32 A 1 2", "2"]
    out = guest_sh(groups_guest(GROUPS["rr-no-io-yet"], tmp_path)
                   + "mpio_groups mpatha >&3; mpio_active_group mpatha >&3", tmp_path)
    # no group is current before I/O chose one (a load, a switchgroup): dm's next one is
    assert out.splitlines() == ["1 E 8:0 A 0 3", "2 E 8:16 F 2 3", "3 E 8:32 A 0 3", "3"]


@pytest.mark.parametrize("status, role, paths", [
    ("st-group2-current", "active", "1"),
    ("st-group2-current", "standby", "0"),  # the first up path outside the active group
    ("st-group2-current", "group:3", "2"),
    ("st-group2-current", "active 1 standby", "1 0"),  # each path once
    ("rr-no-io-yet", "active", "2"),
    ("rr-no-io-yet", "active-group", "2"),
    ("rr-multibus", "active", "1"),  # the first path dm has up, not the failed 8:0
    ("rr-multibus", "active-group", "0 1 2"),
    ("hst-multibus", "active", "1"),
    ("hst-multibus", "active-group", "0 1 2"),
])
def test_a_role_resolves_from_the_kernels_view(tmp_path: Path, status: str, role: str,
                                              paths: str) -> None:
    out = guest_sh(groups_guest(GROUPS[status], tmp_path)
                   + f'echo "resolved $(mpio_resolve 0 {role})" >&3', tmp_path)
    assert out.splitlines()[-1] == f"resolved {paths}"
    # each role is recorded with what it resolved to, for result.json
    targets = [ln for ln in out.splitlines() if ln.startswith("@@MPIO:ACTION target ")]
    assert len(targets) == len([r for r in role.split() if not r.isdigit()])


def test_a_role_that_names_no_path_fails_the_fault(tmp_path: Path) -> None:
    out = guest_sh(groups_guest(GROUPS["rr-multibus"], tmp_path)
                   + "mpio_fault fail_path 0 standby || echo refused >&3\n"
                   + "mpio_fault fail_path 0 active && echo done >&3", tmp_path)
    lines = out.splitlines()
    assert lines[0] == "refused"
    assert lines[1] == ("@@MPIO:ACTION target active lun=0 paths=1 devs=8:16 "
                        "active_group=1")
    assert lines[2:] == ["SIGNAL fail_path 0 1", "done"]


def test_group_checks_judge_where_the_kernel_sends_io(tmp_path: Path) -> None:
    (tmp_path / "io-a").write_text("8:0 remapped=10 iorequest=0 ioerr=0 overrun=0\n"
                                   "8:16 remapped=0 iorequest=0 ioerr=0 overrun=0\n"
                                   "8:32 remapped=0 iorequest=0 ioerr=0 overrun=0\n")
    (tmp_path / "io-b").write_text("8:0 remapped=12 iorequest=0 ioerr=0 overrun=0\n"
                                   "8:16 remapped=50 iorequest=0 ioerr=0 overrun=0\n"
                                   "8:32 remapped=0 iorequest=0 ioerr=0 overrun=0\n")
    (tmp_path / "io-c").write_text("8:0 remapped=40 iorequest=0 ioerr=0 overrun=0\n"
                                   "8:16 remapped=50 iorequest=0 ioerr=0 overrun=0\n"
                                   "8:32 remapped=0 iorequest=0 ioerr=0 overrun=0\n")
    out = guest_sh(groups_guest(GROUPS["st-group2-current"], tmp_path)
                   + "mpio_check_group stayed mpatha same 8:16\n"
                   + "mpio_check_group moved mpatha moved 8:16\n"
                   + "mpio_check_group back mpatha has 8:16\n"
                   + "mpio_check_group elsewhere mpatha has 8:32\n"
                   + "mpio_check_group_io follows mpatha a b\n"
                   + "mpio_check_group_io strays mpatha b c\n"
                   + "mpio_check_group_io asked mpatha b c 8:0", tmp_path,
                   IO_MARGIN="2", IO_MIN="8")
    found = checks(out)
    assert found["stayed"] == ("PASS", "active_group_2_(8:16)_same_8:16;_groups_1:E:8:0_2:A:8:16"
                                       "_3:E:8:32")
    assert found["moved"][0] == "FAIL" and found["moved"][1].endswith(":_not_so")
    assert found["back"][0] == "PASS" and found["elsewhere"][0] == "FAIL"
    assert found["follows"] == ("PASS", "group_8:16_+50;_others:_8:0_+2_8:32_+0")
    status, observed = found["strays"]
    assert status == "FAIL"
    assert "8:0_outside_the_group_got_28_(max_2)" in observed
    assert "the_group_carried_0_(min_8)" in observed
    assert found["asked"] == ("PASS", "group_8:0_+28;_others:_8:16_+0_8:32_+0")


def test_settled_waits_for_the_checker_to_confirm_every_path(tmp_path: Path) -> None:
    """Agreement is not enough: multipathd's log must show its checker looking at every path
    since (a 'pending' answer is no look) and finding it as both views say, else the check
    names the path it has not confirmed."""
    log = tmp_path / "multipathd.log"
    log.write_text("sda: tur state = up\nsdb: tur state = up\n")  # before the agreement
    views = fake_tools([("F", "failed faulty")], tmp_path).replace("multipathd() {",
                                                                    "multipathd_views() {")
    tools = views + f"""
MPIO_DAEMON_LOG={log}
multipathd() {{
	case "$*" in *'%D %d'*) printf '8:0 sda\\n8:16 sdb\\n' ;; *) multipathd_views ;; esac
}}
"""
    out = guest_sh(tools + "mpio_settle never mpatha 1 1 2 || true", tmp_path)
    status, observed = checks(out)["never"]
    assert status == "FAIL" and "has_not_confirmed_8:0_8:16_since" in observed
    # the checker finds sda (failed) offline, answers pending for sdb, then finds it up
    out = guest_sh(tools + f"""
( sleep 0.5; echo 'sda: state offline, checker not called' >> {log}
  echo 'sdb: tur state = pending' >> {log}; sleep 0.5; echo 'sdb: tur state = up' >> {log} ) &
mpio_settle looked mpatha 1 1 5""", tmp_path)
    assert checks(out)["looked"] == ("PASS", "1_active_1_failed")
    # a look that finds the failed path up (multipathd is about to reinstate it) confirms
    # nothing, however long the views agree
    log.write_text("")
    out = guest_sh(tools + f"""
( sleep 0.3; echo 'sda: tur state = up' >> {log}; echo 'sdb: tur state = up' >> {log} ) &
mpio_settle contradicted mpatha 1 1 2 || true""", tmp_path)
    status, observed = checks(out)["contradicted"]
    assert status == "FAIL" and "has_not_confirmed_8:0_since" in observed


def test_what_tells_a_failed_path_from_a_target_error(tmp_path: Path) -> None:
    """The helpers of the target-error scenario: the declared error's sector, the map's
    fail counts, the paths the kernel logged failing since the scenario's mark (not before,
    not another map's), the errors each path's device counted."""
    (tmp_path / "lun-errors").write_text("0 write ENOSPC 245760 always\n"
                                         "0 read ENODATA 253952 once\n")
    (tmp_path / "io-a").write_text("8:0 remapped=5 iorequest=9 ioerr=1 overrun=0\n"
                                   "8:16 remapped=5 iorequest=9 ioerr=0 overrun=0\n")
    (tmp_path / "io-b").write_text("8:0 remapped=7 iorequest=11 ioerr=3 overrun=0\n"
                                   "8:16 remapped=7 iorequest=11 ioerr=2 overrun=0\n")
    dmesg = ("device-mapper: multipath: 254:0: Failing path 8:32.\n"
             "rapido-mpio: scenario target-error starts\n"
             "device-mapper: multipath: 254:1: Failing path 8:48.\n"
             "device-mapper: multipath: 254:0: Failing path 8:0.\n")
    (tmp_path / "dmesg").write_text(dmesg)
    out = guest_sh(f"""
dmsetup() {{ case $1 in status) echo "{DMSETUP.format('F')}" ;; info) echo " 254: 0" ;; esac; }}
dmesg() {{ cat {tmp_path}/dmesg; }}
MPIO_LUN_ERRORS={tmp_path}/lun-errors
{{ mpio_lun_error 0 ENODATA; mpio_lun_error 0 EIO || echo none; mpio_fail_count mpatha
   mpio_failing_paths mpatha; mpio_io_errors a b; }} >&3""", tmp_path)
    assert out.splitlines() == ["read 253952", "none", "3", "8:0", "8:0 +2 8:16 +2"]


@pytest.mark.parametrize("status, prios, verdict, observed", [
    # the best group active though listed second (multipathd switched to it, no reload)
    ("st-group2-current", "8:0 10\n8:16 50\n8:32 10", "PASS",
     "1:standby:8:0_10_2:active:8:16_50_3:standby:8:32_10"),
    ("st-group2-current", "8:0 50\n8:16 10\n8:32 10", "FAIL",
     "the_active_group_is_not_the_best"),
    ("rr-multibus", "8:0 10\n8:16 10\n8:32 10", "FAIL", "one_group"),
    ("rr-multibus", "8:0 10\n8:16 50\n8:32 10", "FAIL", "group_1_mixes_priorities"),
])
def test_groups_follow_the_priorities(tmp_path: Path, status: str, prios: str, verdict: str,
                                      observed: str) -> None:
    out = guest_sh(groups_guest(GROUPS[status], tmp_path)
                   + f"multipathd() {{ printf '{prios}\\n'; }}\n"
                   + "mpio_check_prio_groups prio_groups mpatha", tmp_path)
    status_seen, seen = checks(out)["prio_groups"]
    assert status_seen == verdict and observed in seen, seen


def test_io_snapshot_counts_each_paths_dispatches_from_one_read_of_the_trace(
        tmp_path: Path) -> None:
    """Per path of the map, in the table's order: dm's dispatches (requests and bios) from
    the trace, the SCSI counters (none here: no such devices), the trace's overruns."""
    trace = tmp_path / "tracing"
    for cpu, overrun in ((0, 0), (1, 2)):
        (trace / f"per_cpu/cpu{cpu}").mkdir(parents=True)
        (trace / f"per_cpu/cpu{cpu}/stats").write_text(
            f"entries: 9\noverrun: {overrun}\ncommit overrun: 0\n")
    rq = "  dd-81  [001] .....  4.5: block_rq_remap: 251,16 W 8 + 8 <- (254,0) 8\n"
    bio = "  kw-9  [000] .....  4.6: block_bio_remap: 251,0 R 0 + 8 <- (254,0) 0\n"
    other = "  dd-81  [001] .....  4.7: block_rq_issue: 251,0 W 8 () 8 + 8 [dd]\n"
    (trace / "trace").write_text("# tracer: nop\n" + rq * 3 + bio + other)
    channel = guest_sh("mpio_path_states() { printf '251:16 F F\\n251:0 A A\\n251:32 A A\\n'; }\n"
                       "mpio_io_snapshot before mpatha", tmp_path, MPIO_TRACE=str(trace),
                       PATH=busybox_only(tmp_path, "awk"))
    sent = [ln.removeprefix("@@MPIO:LINE io-before ") for ln in channel.splitlines()
            if ln.startswith("@@MPIO:LINE io-before ")]
    assert sent == ["251:16 remapped=3 iorequest=0 ioerr=0 overrun=2",
                    "251:0 remapped=1 iorequest=0 ioerr=0 overrun=2",
                    "251:32 remapped=0 iorequest=0 ioerr=0 overrun=2"]
    assert (tmp_path / "io-before").read_text().splitlines() == sent


def test_a_block_is_sent_line_by_line_as_it_was(tmp_path: Path) -> None:
    channel = guest_sh("printf '  two spaces\\nback\\\\slash\\n\\nlast' | mpio_send blk", tmp_path,
                       PATH=busybox_only(tmp_path, "awk", "printf"))
    assert channel.splitlines() == ["@@MPIO:BEGIN blk", "@@MPIO:LINE blk   two spaces",
                                    "@@MPIO:LINE blk back\\slash", "@@MPIO:LINE blk ",
                                    "@@MPIO:LINE blk last", "@@MPIO:STOP blk"]
