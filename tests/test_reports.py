"""The matrix reports (timeline, JUnit, KCIDB, HTML) on real run directories (tests/data/runs,
copied from real boots) and on combinations that never booted."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import kcidb_io
import pytest

from rapido_mpio import htmlpage, junit, kcidb, reports, timeline
from rapido_mpio.config import REPO_ROOT

from .matrix_data import FIXTURE_RUNS, fixture_matrix

FAILOVER = FIXTURE_RUNS / "20261126-054507-failover"
REINSTATE = FIXTURE_RUNS / "20261126-023535-reinstate"
ALL_PATHS_LOST = FIXTURE_RUNS / "20261126-054438-all-paths-lost"
TEMPLATES = REPO_ROOT / "templates"


def test_timeline_failover() -> None:
    t = timeline.read(FAILOVER)
    assert t.missing == ()
    assert t.kernel_start == 0.171 and t.scenario_start == 4.019 and t.end == 9.776
    assert [(f.at, f.label, f.in_guest) for f in t.faults] == [(6.603, "fail_path 0 0", False)]
    assert t.paths == ["8:16", "8:0"]
    # settle-map_paths.txt: "at 4.65s" is guest uptime; on the host that is kernel_start later
    first = t.samples[0]
    assert (first.at, first.check, first.path, first.kernel, first.multipathd) == \
        (4.821, "map_paths", "8:16", "A", "A")
    after = [s for s in t.samples if s.check == "paths_after_fault" and s.path == "8:16"]
    assert after and all(s.kernel == "F" and s.multipathd == "F" for s in after)
    # kmsg.txt: "[    6.492887] device-mapper: multipath: 254:0: Failing path 8:16."
    assert [(e.at, e.path, e.event, e.map) for e in t.kernel_events] == \
        [(round(0.171 + 6.492887, 3), "8:16", "failing", "254:0")]
    assert [s.name for s in t.steps][-4:] == ["io_after_fault", "paths_after_fault", "data",
                                              "umount"]
    assert ("path_failed", "PASS", "fail_path_0") in [(c.name, c.status, c.observed)
                                                       for c in t.checks]


def test_timeline_io_snapshots_estimated_without_blocks_at() -> None:
    """These runs predate blocks_at: each snapshot takes the time of the message before it."""
    t = timeline.read(REINSTATE)
    assert [s.label for s in t.io] == ["before", "settled", "end", "restored", "reinstated"]
    assert all(s.estimated for s in t.io)
    settled = next(s for s in t.io if s.label == "settled")
    assert settled.at == 9.138  # CHECK paths_after_fault came just before BEGIN io-settled
    assert settled.count("8:16") == 1096 and settled.count("8:16", "ioerr") == 2


def test_timeline_io_snapshots_at_blocks_at(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FAILOVER, run)
    result = json.loads((run / "result.json").read_text())
    result["blocks_at"] = {"io-before": 6.2, "io-settled": 8.6, "io-end": 9.1}
    (run / "result.json").write_text(json.dumps(result))
    t = timeline.read(run)
    assert [(s.label, s.at, s.estimated) for s in t.io] == \
        [("before", 6.2, False), ("settled", 8.6, False), ("end", 9.1, False)]


def test_timeline_of_a_run_that_never_booted(tmp_path: Path) -> None:
    (tmp_path / "console.log").write_text("[    0.1] Linux version\n")
    t = timeline.read(tmp_path)
    assert t.faults == () and t.samples == () and t.io == () and t.end is None
    assert "result.json" in t.missing
    assert htmlpage.draw(t) is None
    assert timeline.read(tmp_path / "absent").missing


def test_timeline_of_a_hung_run(tmp_path: Path) -> None:
    """result.json without a verdict and a truncated settle file: what there is, no error."""
    run = tmp_path / "run"
    shutil.copytree(FAILOVER, run)
    result = json.loads((run / "result.json").read_text())
    result["timings"]["verdict"] = result["timings"]["qemu_exit"] = None
    result["events"] = result["events"][:9] + ["garbage"]
    (run / "result.json").write_text(json.dumps(result))
    (run / "settle-paths_after_fault.txt").write_text("at 7.00s\n8:16 F\n8:16 F F\nat\n")
    (run / "kmsg.txt").unlink()
    t = timeline.read(run)
    assert t.end == max(t.times)  # the last thing seen
    assert [s.path for s in t.samples if s.check == "paths_after_fault"] == ["8:16"]
    assert t.missing == ("kmsg.txt",)
    assert htmlpage.draw(t) is not None


def test_junit() -> None:
    m, _ = fixture_matrix()
    built = junit.build(m).getroot()
    assert built is not None
    root = ET.fromstring(ET.tostring(built, encoding="unicode"))  # parsed back
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["rapido-mpio.default"]  # one per kernel
    cases = root.findall("testsuite/testcase")
    assert len(cases) == len(m.results) == 7
    assert {c.get("name") for c in cases} == {r.combination.id for r in m.results}
    by_name = {c.get("name"): c for c in cases}
    assert root.get("tests") == "7" and root.get("failures") == "2"
    assert root.get("errors") == "1" and root.get("skipped") == "1"
    fail = by_name["failover/queue-length/-/offline/default"]
    failure = fail.find("failure")
    assert failure is not None and "path_io: down_8:0_+47" in (failure.text or "")
    assert "@@MPIO:VERDICT failover FAIL 9" in (failure.text or "")  # the console tail
    control = by_name["all-paths-lost/-/-/-/default"]
    assert control.find("failure") is None and control.get("classname") == "all-paths-lost"
    assert "failed exactly as declared" in (control.findtext("system-out") or "")
    blind = by_name["all-paths-lost/service-time/-/-/default"].find("failure")
    assert blind is not None and "did not fail as declared" in blind.get("message", "")
    assert by_name["reinstate/-/group_by_prio/-/default"].find("error") is not None
    assert by_name["failover/historical-service-time/-/-/default"].find("skipped") is not None
    assert by_name["failover/-/-/-/default"].get("time") == "9.776"


def test_junit_file_is_xml_despite_console_control_characters(tmp_path: Path) -> None:
    m, _ = fixture_matrix()
    path = junit.write(m, tmp_path / "junit.xml")
    ET.parse(path)  # the synthetic console tail has ESC and NUL


def test_kcidb_validates_against_the_newest_schema(tmp_path: Path) -> None:
    m, out = fixture_matrix()
    data = kcidb.build(m, out, origin="mylab")
    kcidb_io.schema.LATEST.validate(data)
    assert kcidb_io.schema.LATEST.is_valid(data)
    tests = {t["misc"]["combination"]["id"]: t for t in data["tests"]}
    assert len(tests) == len(m.results)
    for obj in [*data["checkouts"], *data["builds"], *data["tests"]]:
        assert obj["id"].startswith("mylab:") and obj["origin"] == "mylab"
    assert len(data["builds"]) == 1 and data["builds"][0]["id"] == "mylab:build:default"
    assert tests["all-paths-lost/-/-/-/default"]["status"] == "PASS"  # failed as declared
    assert tests["all-paths-lost/service-time/-/-/default"]["status"] == "FAIL"
    assert tests["failover/historical-service-time/-/-/default"]["status"] == "SKIP"
    assert tests["reinstate/-/group_by_prio/-/default"]["status"] == "ERROR"
    failover = tests["failover/-/-/-/default"]
    assert failover["path"] == "rapido_mpio.failover.default.default.default"
    assert "log_url" not in failover  # the fixtures keep no console.log
    urls = {f["name"]: f["url"] for f in failover["output_files"]}
    assert urls["result.json"] == (FAILOVER / "result.json").resolve().as_uri()
    assert "settle-paths_after_fault.txt" in urls
    with pytest.raises(ValueError):
        kcidb.build(m, out, origin="My-Lab")
    path = kcidb.write(m, out, tmp_path / "kcidb.json")
    kcidb_io.schema.LATEST.validate(json.loads(path.read_text()))


def test_html_has_a_row_per_combination_and_a_timeline_per_run() -> None:
    m, out = fixture_matrix()
    html = htmlpage.render(m, out, TEMPLATES)
    rows = re.findall(r'<tr class="combination (\w+)" data-id="([^"]+)"', html)
    assert sorted(i for _, i in rows) == sorted(r.combination.id for r in m.results)
    assert [g for g, _ in rows] == sorted((g for g, _ in rows), key=htmlpage.GROUPS.index)
    assert rows[0][0] == "FAIL"
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="timeline"') == 1 + 3
    assert "fail_path 0 0" in html and "restore_path 0 0" in html
    assert 'href="runs/20261126-054507-failover/"' in html
    assert "down_8:0_+47_up_8:16_+47:_down_path_8:0_got_47_(max_2)" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    assert "<script" not in html


def test_write_all(tmp_path: Path) -> None:
    m, _ = fixture_matrix()
    out = tmp_path / "matrix"
    shutil.copytree(FIXTURE_RUNS, out / "runs")
    written = reports.write_all(m, out, TEMPLATES, kcidb_file=tmp_path / "kcidb.json")
    assert [p.name for p in written] == ["matrix.json", "junit.xml", "index.html", "kcidb.json"]
    assert all(p.stat().st_size > 0 for p in written)
    assert reports.write_all(m, out, TEMPLATES)[-1].name == "index.html"
