"""Run one in-process task several times at once, each time in a forked child of its own.

`--repeat` boots the same image N times, as many VMs at a time as the matrix runs. Each child
runs exactly a lone run's path (its own QEMU, scratch directory, and run directory under the
same output directory) and sends its outcome back pickled through a pipe; the parent only
starts, waits for and stops children. A fork, not a `rapido-mpio boot` child as the matrix's
pool starts: the outcome comes back as the object a lone run returns, and the runs land where
a lone run puts them. Written here rather than with multiprocessing or concurrent.futures:
their workers are neither tied to the parent's life (a SIGKILLed parent would leave QEMUs
running) nor unwound by SIGTERM as a Ctrl-C'd run is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any, NoReturn, TypeVar

from rapido_mpio import lifetime
from rapido_mpio.errors import ExitCode, Interrupted, MpioError

T = TypeVar("T")


@dataclasses.dataclass
class _Child:
    pid: int
    fd: int  # the read end of the pipe its reply comes through
    reply: bytearray = dataclasses.field(default_factory=bytearray)


def run(task: Callable[[int], T], times: int, at_once: int) -> Generator[T, None, None]:
    """task(0) .. task(times - 1), `at_once` at a time, each in a child; yield each result as
    its child ends. A child's MpioError is raised here, with its exit code; whatever ends the
    iteration (done, an error, Ctrl-C, the caller closing it) stops every child still running."""
    pending = list(range(times))
    running: dict[int, _Child] = {}
    sel = selectors.DefaultSelector()
    try:
        while pending or running:
            while pending and len(running) < at_once:
                child = _start(task, pending.pop(0))
                running[child.fd] = child
                sel.register(child.fd, selectors.EVENT_READ)
            for key, _ in sel.select():
                child = running[key.fd]
                chunk = os.read(child.fd, 1 << 16)
                if chunk:
                    child.reply += chunk
                    continue
                sel.unregister(child.fd)
                os.close(child.fd)
                del running[child.fd]
                _, status = os.waitpid(child.pid, 0)
                yield _result(child, status)
    finally:
        stop(list(running.values()))
        for child in running.values():
            os.close(child.fd)
        sel.close()


def _start(task: Callable[[int], T], index: int) -> _Child:
    parent = os.getpid()
    handlers = {sig: signal.getsignal(sig) for sig in lifetime.INTERRUPTS}
    r, w = os.pipe()
    # a child started is a child stopped: no interrupt before the caller holds its pid
    with lifetime.signals_deferred():
        sys.stdout.flush()
        sys.stderr.flush()  # or the child writes the parent's buffered lines again
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(task, index, w, parent, handlers)
    os.close(w)
    return _Child(pid, r)


def _child(task: Callable[[int], T], index: int, w: int, parent: int,
           handlers: dict[signal.Signals, Any]) -> NoReturn:
    reply: tuple[Any, ...]
    try:
        for sig, handler in handlers.items():  # the run's own, not the deferral's
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        lifetime.tie_to_parent(parent, signal.SIGTERM)  # unwinds as Ctrl-C does
        reply = ("done", task(index))
    except MpioError as e:
        reply = ("error", int(e.exit_code), e.message, e.hint)
    except KeyboardInterrupt as e:
        reply = ("interrupted", e.stopped if isinstance(e, Interrupted) else "")
    except BaseException:  # a bug: the parent reports it as its own
        reply = ("bug", traceback.format_exc())
    try:
        data = pickle.dumps(reply)
    except Exception:  # unpicklable: a bug to report, not a hang
        data = pickle.dumps(("bug", traceback.format_exc()))
    with contextlib.suppress(OSError):
        sys.stdout.flush()
        sys.stderr.flush()
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
    os._exit(0)  # not the parent's cleanup: its atexit handlers and finally blocks are its own


def _result(child: _Child, status: int) -> Any:
    try:
        reply = pickle.loads(bytes(child.reply))
    except Exception:  # undecodable: the child died mid-way
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.waitstatus_to_exitcode(status)}")
        raise MpioError(f"A repeated run (pid {child.pid}) ended without an outcome ({how}).",
                        hint="Its run directory, if it made one, has what it saw.") from None
    kind = reply[0]
    if kind == "done":
        return reply[1]
    if kind == "error":
        error = MpioError(reply[2], reply[3])
        error.exit_code = ExitCode(reply[1])
        raise error
    if kind == "interrupted":
        raise Interrupted(reply[1]) if reply[1] else KeyboardInterrupt
    raise RuntimeError(f"a repeated run failed:\n{reply[1]}")


def stop(children: list[_Child]) -> None:
    """SIGTERM: each child unwinds as a Ctrl-C'd run does, ending its QEMU by PID. A child
    too slow at it is killed, and its QEMU with it (the parent-death signal)."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + lifetime.STOP_GRACE
    for child in children:
        while os.waitpid(child.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                os.waitpid(child.pid, 0)
                break
            time.sleep(0.05)
