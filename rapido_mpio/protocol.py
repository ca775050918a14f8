"""The guest's protocol, decoded here and only here: bytes from its channel in, typed
messages out, or a ProtocolError naming the line.

The guest sends `@@MPIO:KIND TEXT` lines (cut/rootfs/usr/lib/mpio/lib.sh). Nothing it sends
is trusted: a name becomes a file name on the host (block NAME is saved as NAME.txt), a
number becomes a schedule, a count becomes memory. So every field is checked against a
strict grammar (ASCII digits, ranges, a safe set of characters for names) and the stream
against bounds (line length, bytes, messages, blocks); anything else is a protocol error.
"""

from __future__ import annotations

import dataclasses
import math
import re

MARKER = "@@MPIO:"
MAX_LINE = 16 * 1024  # bytes in one line; the longest real ones are kernel log lines
MAX_BYTES = 64 << 20  # bytes in one run; a real run sends about 20 KB
MAX_MESSAGES = 100_000  # a real run sends about 200
MAX_BLOCKS = 256  # a real run sends about 15
MAX_ARGS = 8  # words after an ACTION's name
SHOWN = 100  # characters of an offending line in an error sentence

# a file name in the run directory: no path separator, no leading dot or dash, bounded
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
WORD = re.compile(r"[!-~]{1,64}")  # an ACTION argument: printable ASCII, no space
NUMBER = re.compile(r"[0-9]{1,9}")
DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
STATUSES = ("PASS", "FAIL", "SKIP")
RESULTS = ("PASS", "FAIL")
MAX_PATH = 255  # LUN and path numbers (the topology says which exist)
MAX_SECONDS = 86_400.0  # a step's deadline, a flap period, the guest's uptime at init
MAX_FLAPS = 1000
MAX_CHECKS = 10_000
# the io-LABEL blocks: "8:16 remapped=12 iorequest=30 ioerr=0 overrun=0"
IO_DEV = re.compile(r"[0-9]{1,4}:[0-9]{1,7}")
IO_FIELD = re.compile(r"([a-z_]{1,32})=([0-9]{1,18})")


class ProtocolError(Exception):
    """The guest sent something outside the protocol: a bug in the guest side, or a
    hostile guest. The run ends as a setup error (255), never as a verdict."""

    def __init__(self, problem: str, line: str | bytes) -> None:
        super().__init__(f"{problem}, in the line {shown(line)}")
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Fault:
    """A fault the guest asks the host for (EVENT fail_path 0 1, flap_path 0 1 4 3, ...)."""

    name: str  # fail_path, remove_path, restore_path, flap_path
    lun: int
    path: int
    period: float = 0.0  # flap_path: seconds from one failure to the next
    count: int = 0  # flap_path: how many failures

    @property
    def args(self) -> tuple[str, ...]:
        """As the guest wrote them (for result.json's actions)."""
        flap = (f"{self.period:g}", str(self.count)) if self.name == "flap_path" else ()
        return (str(self.lun), str(self.path), *flap)


FAULTS = {"fail_path": 2, "remove_path": 2, "restore_path": 2, "flap_path": 4}  # -> arity


@dataclasses.dataclass(frozen=True)
class Message:
    """One decoded line. `text` is what followed the kind (for logs and result.json); the
    typed fields are what the host acts on."""

    kind: str  # START, STEP, SCENARIO, CHECK, EVENT, ACTION, BEGIN, LINE, STOP, VERDICT
    text: str
    at: float  # seconds since QEMU started
    name: str = ""  # the scenario, step, check, action, fault or block it is about
    args: tuple[str, ...] = ()  # CHECK: status, observed; ACTION: its words; LINE: the line
    seconds: float | None = None  # START: the guest's uptime; STEP: its deadline
    count: int | None = None  # VERDICT: the guest's count of checks
    fault: Fault | None = None  # EVENT: the fault asked for (None: END)


def shown(line: str | bytes) -> str:
    """A line for an error sentence: escaped (no control characters reach a terminal) and
    cut short."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    cut = text[:SHOWN]
    return ascii(cut) + (f" (cut at {SHOWN} of {len(text)} characters)"
                         if len(text) > SHOWN else "")


def number(word: str, low: int, high: int, what: str) -> int:
    if not NUMBER.fullmatch(word) or not low <= int(word) <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, not "
                         f"{shown(word)}")
    return int(word)


def seconds(word: str, low: float, high: float, what: str) -> float:
    value = float(word) if DECIMAL.fullmatch(word) else math.nan
    if not low <= value <= high:  # nan never is
        raise ValueError(f"{what} must be a number of seconds from {low:g} to {high:g}, "
                         f"not {shown(word)}")
    return value


def name(word: str, what: str) -> str:
    if not NAME.fullmatch(word):
        raise ValueError(f"{what} {shown(word)} is not a safe name (letters, digits, "
                         f"'.', '_', '-'; at most 100; no leading '.' or '-')")
    return word


def fault(words: list[str]) -> Fault:
    """'flap_path 0 1 4 3' -> Fault; ValueError for anything else."""
    if not words or words[0] not in FAULTS:
        raise ValueError(f"unknown fault {shown(' '.join(words[:1]))} (known: "
                         f"{', '.join(sorted(FAULTS))})")
    kind, args = words[0], words[1:]
    if len(args) != FAULTS[kind]:
        raise ValueError(f"{kind} takes {FAULTS[kind]} arguments, got {len(args)}")
    lun = number(args[0], 0, MAX_PATH, "a LUN")
    path = number(args[1], 0, MAX_PATH, "a path")
    if kind != "flap_path":
        return Fault(kind, lun, path)
    return Fault(kind, lun, path, seconds(args[2], 0.1, MAX_SECONDS, "a flap period"),
                 number(args[3], 1, MAX_FLAPS, "a flap count"))


def io_line(line: str) -> tuple[str, dict[str, int]]:
    """'8:16 remapped=12 ioerr=0' (a line of an io-LABEL block) -> ('8:16', counts)."""
    dev, *fields = line.split(" ")
    if not IO_DEV.fullmatch(dev):
        raise ValueError(f"an io line must start with a device MAJOR:MINOR, not {shown(dev)}")
    counts = {}
    for field in fields:
        m = IO_FIELD.fullmatch(field)
        if m is None:
            raise ValueError(f"an io count must be name=number, not {shown(field)}")
        counts[m.group(1)] = int(m.group(2))
    return dev, counts


def decode(line: str, at: float) -> Message:
    """One line, from its marker on (`@@MPIO:KIND TEXT`, no newline) -> Message."""
    if not line.startswith(MARKER):
        raise ProtocolError("no @@MPIO: marker", line)
    kind, _, text = line[len(MARKER):].partition(" ")
    text = text.strip(" \r")
    words = text.split(" ") if text else []
    try:
        return _decode(kind, text, words, at)
    except ValueError as e:
        raise ProtocolError(f"{kind or 'a message'}: {e}", line) from None


def _decode(kind: str, text: str, words: list[str], at: float) -> Message:
    def arity(n: int) -> None:
        if len(words) != n:
            raise ValueError(f"takes {n} words, got {len(words)}")

    msg = Message(kind, text, at)
    if kind in ("BEGIN", "STOP", "SCENARIO"):
        arity(1)
        return dataclasses.replace(msg, name=name(words[0], "the name"))
    if kind == "LINE":  # the rest of the line is the block's line, spaces and all
        block, _, rest = text.partition(" ")
        msg = dataclasses.replace(msg, name=name(block, "the block name"), args=(rest,))
        if block.startswith("io-"):
            io_line(rest)
        return msg
    if kind == "START":
        arity(2)
        return dataclasses.replace(msg, name=name(words[0], "the scenario"),
                                   seconds=seconds(words[1], 0.0, MAX_SECONDS, "the uptime"))
    if kind == "STEP":
        arity(2)
        return dataclasses.replace(msg, name=name(words[0], "the step"),
                                   seconds=seconds(words[1], 0.0, MAX_SECONDS, "a deadline"))
    if kind == "CHECK":  # name STATUS observed (squeezed into one word by the guest)
        if len(words) < 3 or words[1] not in STATUSES:
            raise ValueError(f"must be NAME {'|'.join(STATUSES)} OBSERVED")
        observed = text.split(" ", 2)[2]
        return dataclasses.replace(msg, name=name(words[0], "the check"),
                                   args=(words[1], observed))
    if kind == "VERDICT":
        arity(3)
        if words[1] not in RESULTS:
            raise ValueError(f"the result must be {' or '.join(RESULTS)}")
        return dataclasses.replace(msg, name=name(words[0], "the scenario"), args=(words[1],),
                                   count=number(words[2], 0, MAX_CHECKS, "the check count"))
    if kind == "EVENT":
        if words == ["END"]:
            return dataclasses.replace(msg, name="END")
        f = fault(words)
        return dataclasses.replace(msg, name=f.name, fault=f, args=f.args)
    if kind == "ACTION":  # a fault the guest made itself: offline_path 0 1 2:0:0:1
        if not words or len(words) > MAX_ARGS + 1:
            raise ValueError(f"takes a name and at most {MAX_ARGS} words")
        for word in words[1:]:
            if not WORD.fullmatch(word):
                raise ValueError(f"an argument must be printable ASCII, not {shown(word)}")
        return dataclasses.replace(msg, name=name(words[0], "the action"),
                                   args=tuple(words[1:]))
    raise ValueError("unknown kind")


class Decoder:
    """The channel's byte stream -> messages, in time linear in its length, within bounds.

    Bytes before a marker on a line are noise (the tty's own) and are skipped, as are lines
    without one; the host's acknowledgements never come back (the guest sets -echo)."""

    def __init__(self) -> None:
        self.partial = bytearray()  # the line being received, at most MAX_LINE + 1 bytes
        self.received = 0
        self.messages = 0
        self.blocks: set[str] = set()

    def feed(self, chunk: bytes, at: float) -> list[Message | ProtocolError]:
        """Messages for every line `chunk` completes; a ProtocolError ends the list (the
        stream cannot be trusted past it)."""
        out: list[Message | ProtocolError] = []
        self.received += len(chunk)
        *ends, rest = chunk.split(b"\n")
        for end in ends:
            line = bytes(self.partial + end)
            self.partial.clear()
            try:
                msg = self.line(line, at)
            except ProtocolError as e:
                return [*out, e]
            if msg is not None:
                out.append(msg)
        self.partial += rest[:MAX_LINE + 1 - len(self.partial)]
        if len(self.partial) > MAX_LINE:
            out.append(ProtocolError(f"a line longer than {MAX_LINE} bytes", bytes(self.partial)))
        elif self.received > MAX_BYTES:
            out.append(ProtocolError(f"more than {MAX_BYTES >> 20} MiB in one run", rest))
        return out

    def line(self, raw: bytes, at: float) -> Message | None:
        """One line without its newline -> Message, or None for noise."""
        if len(raw) > MAX_LINE:
            raise ProtocolError(f"a line longer than {MAX_LINE} bytes", raw)
        start = raw.find(MARKER.encode())
        if start < 0:
            return None
        msg = decode(raw[start:].decode("utf-8", "replace").rstrip("\r"), at)
        self.messages += 1
        if self.messages > MAX_MESSAGES:
            raise ProtocolError(f"more than {MAX_MESSAGES} messages in one run", raw)
        if msg.kind in ("BEGIN", "LINE") and msg.name not in self.blocks:
            self.blocks.add(msg.name)
            if len(self.blocks) > MAX_BLOCKS:
                raise ProtocolError(f"more than {MAX_BLOCKS} blocks in one run", raw)
        return msg


def step_of(lines: list[str]) -> str | None:
    """The step a protocol log says the guest is in ('verdict' once it sent one), or None
    before the first step: for a live view, so a line that does not decode is skipped."""
    step = None
    for line in lines:
        try:
            msg = decode(line, 0.0)
        except ProtocolError:
            continue
        if msg.kind == "STEP":
            step = msg.name
        elif msg.kind == "VERDICT":
            step = "verdict"
    return step
