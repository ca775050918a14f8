"""The guest channel's decoder (protocol.py): real runs decode, hostile lines are protocol
errors, and fuzzed input gives a typed message or a protocol error, never anything else."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapido_mpio import protocol, report
from rapido_mpio.console import Channel, ChannelClosed
from rapido_mpio.errors import ExitCode
from rapido_mpio.protocol import Decoder, Fault, Message, ProtocolError, decode
from rapido_mpio.verdict import decide
from rapido_mpio.vm import RunRecord

RUNS = Path(__file__).resolve().parent / "data" / "runs"
KINDS = ("START", "STEP", "SCENARIO", "CHECK", "EVENT", "ACTION", "BEGIN", "LINE", "STOP",
         "VERDICT")
# seeded and bounded: the same examples on every run, in a few seconds
FUZZ = settings(derandomize=True, max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _feed(data: bytes) -> list[Message | ProtocolError]:
    return Decoder().feed(data, 1.0)


@pytest.mark.parametrize("log", sorted(RUNS.glob("*/protocol.log")), ids=lambda p: p.parent.name)
def test_real_runs_decode(log: Path) -> None:
    items = _feed(log.read_bytes())
    assert items and all(isinstance(m, Message) for m in items)
    assert sum(1 for m in items if isinstance(m, Message) and m.kind == "VERDICT") == 1


def test_typed_fields() -> None:
    assert decode("@@MPIO:START failover 1.59", 3.0).seconds == 1.59
    step = decode("@@MPIO:STEP flap 95", 0.0)
    assert (step.name, step.seconds) == ("flap", 95.0)
    check = decode("@@MPIO:CHECK data_intact SKIP mounted failed", 0.0)
    assert (check.name, check.args) == ("data_intact", ("SKIP", "mounted failed"))
    verdict = decode("@@MPIO:VERDICT failover PASS 11", 0.0)
    assert (verdict.args, verdict.count) == (("PASS",), 11)
    assert decode("@@MPIO:EVENT flap_path 0 1 2.5 3", 0.0).fault == Fault("flap_path", 0, 1,
                                                                           2.5, 3)
    end = decode("@@MPIO:EVENT END", 0.0)
    assert (end.name, end.fault) == ("END", None)
    action = decode("@@MPIO:ACTION offline_path 0 1 2:0:0:1", 0.0)
    assert (action.name, action.args) == ("offline_path", ("0", "1", "2:0:0:1"))
    line = decode("@@MPIO:LINE multipath-before   `- 2:0:0:0 sda 8:0 active ready", 0.0)
    assert (line.name, line.args) == ("multipath-before", ("  `- 2:0:0:0 sda 8:0 active ready",))
    assert protocol.io_line("8:16 remapped=12 ioerr=0") == ("8:16", {"remapped": 12, "ioerr": 0})


@pytest.mark.parametrize("line", [
    "@@MPIO:EVENT", "@@MPIO:ACTION", "@@MPIO:EVENT fail_path 0.5 1",
    "@@MPIO:EVENT fail_path \u00b2 1", "@@MPIO:EVENT fail_path \u0661 1",  # Arabic-Indic one
    "@@MPIO:EVENT flap_path 0 0 1000 999999999999", "@@MPIO:EVENT flap_path 0 0 nan 2",
    "@@MPIO:EVENT flap_path 0 0 inf 2", "@@MPIO:EVENT flap_path 0 0 1e3 2",
    "@@MPIO:EVENT flap_path 0 0 0 5", "@@MPIO:EVENT fail_path 0", "@@MPIO:EVENT fail_path -1 0",
    "@@MPIO:EVENT rm_rf 0 0", "@@MPIO:BEGIN ../../x", "@@MPIO:BEGIN /etc/passwd",
    "@@MPIO:BEGIN .hidden", "@@MPIO:BEGIN -rf", "@@MPIO:BEGIN a\0b", "@@MPIO:BEGIN a/b",
    "@@MPIO:BEGIN " + "a" * 101, "@@MPIO:LINE ../x data", "@@MPIO:STOP ..",
    "@@MPIO:LINE io-x ", "@@MPIO:LINE io-x 8:0 remapped=\u00b2", "@@MPIO:LINE io-x dev x=1",
    "@@MPIO:STEP fault", "@@MPIO:STEP fault nan", "@@MPIO:STEP fault 1e9",
    "@@MPIO:START failover", "@@MPIO:CHECK x MAYBE y", "@@MPIO:CHECK x PASS",
    "@@MPIO:VERDICT failover PASS x", "@@MPIO:VERDICT failover OK 1", "@@MPIO:WHAT x",
    "@@MPIO:", "@@MPIO:ACTION x \x1b[2J",
])
def test_hostile_lines_are_protocol_errors(line: str) -> None:
    with pytest.raises(ProtocolError) as e:
        decode(line, 0.0)
    assert len(str(e.value)) < 600 and "\0" not in str(e.value) and "\x1b" not in str(e.value)


def test_bounds_on_lines_messages_and_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    d = Decoder()
    began = time.monotonic()
    found: list[Message | ProtocolError] = []
    for _ in range(64):  # 4 MiB without a newline, in the chunks a socket gives
        found += d.feed(b"x" * 65536, 0.0)
    assert time.monotonic() - began < 1.0  # linear: each byte is looked at once
    assert isinstance(found[0], ProtocolError) and "longer than" in str(found[0])
    blocks = b"".join(b"@@MPIO:BEGIN b%d\n" % i for i in range(protocol.MAX_BLOCKS + 1))
    assert isinstance(_feed(blocks)[-1], ProtocolError)
    assert len(_feed(blocks)) == protocol.MAX_BLOCKS + 1
    monkeypatch.setattr(protocol, "MAX_MESSAGES", 1000)  # the bound, not the number, matters
    many = b"@@MPIO:STEP a 1\n" * (protocol.MAX_MESSAGES + 1)
    assert "messages" in str(_feed(many)[-1])


def test_noise_without_a_marker_is_skipped() -> None:
    items = _feed(b"\0\xff garbage\r\n\x00@@MPIO:SCENARIO failover\r\n")
    assert [(m.kind, m.name) for m in items if isinstance(m, Message)] == [("SCENARIO",
                                                                            "failover")]


def _safe_file_name(name: str, run_dir: Path = Path("/run-dir")) -> bool:
    return ((run_dir / f"{name}.txt").parent == run_dir and "\0" not in name
            and not name.startswith(".") and name.isascii() and len(name) <= 100)


def _check(items: list[Message | ProtocolError]) -> None:
    assert all(isinstance(m, (Message, ProtocolError)) for m in items)
    assert all(isinstance(m, Message) for m in items[:-1])  # an error ends the stream
    for m in items:
        if isinstance(m, Message):
            assert m.kind in KINDS
            if m.kind in ("BEGIN", "LINE", "STOP"):
                assert _safe_file_name(m.name), m.name


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_bytes(data: bytes) -> None:
    _check(_feed(data))


# lines that get past the marker: a known kind, then words from the protocol's own
# vocabulary mixed with anything at all
WORDS = st.one_of(
    st.sampled_from(["END", "fail_path", "flap_path", "restore_path", "remove_path", "PASS",
                     "FAIL", "SKIP", "io-x", "kmsg", "0", "1", "2.5", "255", "256", "-1",
                     "..", ".", "/", "nan", "1e3", "\u00b2", "\0", "8:16", "remapped=1", ""]),
    st.text(max_size=12), st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,8})?", fullmatch=True))


@FUZZ
@given(st.sampled_from(KINDS), st.lists(WORDS, max_size=7), st.sampled_from([" ", "  ", "\t"]))
def test_fuzz_protocol_lines(kind: str, words: list[str], sep: str) -> None:
    line = f"@@MPIO:{kind} {sep.join(words)}\n".encode("utf-8", "surrogatepass")
    _check(_feed(line))


@settings(FUZZ, max_examples=100)
@given(st.lists(st.integers(1, 400), max_size=40))
def test_fuzz_chunk_boundaries_do_not_matter(cuts: list[int]) -> None:
    """However the socket splits the stream, the same messages come out."""
    data = (RUNS / "20261126-054507-failover/protocol.log").read_bytes()
    d, items, at = Decoder(), [], 0
    for n in cuts:
        items += d.feed(data[at:at + n], 1.0)
        at += n
    items += d.feed(data[at:], 1.0)
    assert items == _feed(data)


def test_channel_delivers_messages_then_the_protocol_error(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"@@MPIO:START failover 1.5\n@@MPIO:BEGIN ../../x\n@@MPIO:STOP x\n")
    with open(tmp_path / "protocol.log", "w") as log:
        channel = Channel(ours, time.monotonic(), log)
        deadline = time.monotonic() + 5
        assert channel.receive(deadline).kind == "START"
        with pytest.raises(ProtocolError, match=r"'../../x' is not a safe name"):
            channel.receive(deadline)
        with pytest.raises(ProtocolError):  # the stream stays over
            channel.receive(deadline)
        channel.acknowledge("END")
    assert theirs.recv(100) == b"mpio-ack END\n"
    theirs.close()
    with pytest.raises(ChannelClosed), open(tmp_path / "protocol.log", "a") as log:
        Channel(ours, 0.0, log).receive(time.monotonic() + 5)
    assert (tmp_path / "protocol.log").read_text().startswith("@@MPIO:START failover 1.5\n")


def test_protocol_error_is_an_error_verdict(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, tmp_path / "console.log", "TCG", qemu_status=0)
    record.messages = [decode("@@MPIO:START failover 1.5", 2.0),
                       decode("@@MPIO:SCENARIO failover", 3.0)]
    record.protocol_error = "BEGIN: the name '../x' is not a safe name, in the line '...'"
    v = decide(record, "failover")
    assert (v.result, v.exit_code) == ("ERROR", ExitCode.SETUP)
    assert v.reason.startswith("A protocol error: the guest sent BEGIN")
    assert report.timings(record)["kernel_start"] == 0.5
