"""What a running matrix shows: on a terminal, a live view (rich) of the combinations that
are running, with their step, and of what is done and failed, with the time left; without a
terminal (CI), one line per finished combination."""

from __future__ import annotations

import statistics
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rapido_mpio.pool import Running
from rapido_mpio.results import CombinationResult

GUESS_SECONDS = 15.0  # a combination's length before any has finished


def verdict_word(r: CombinationResult) -> str:
    """PASS, FAIL, UNTESTABLE, ERROR; for a negative control, whether it failed as declared."""
    if r.expect_fail and r.result == "FAIL":
        return "FAIL-AS-DECLARED" if r.as_declared else "FAIL-NOT-AS-DECLARED"
    if r.expect_fail and r.result == "PASS":
        return "PASS-CONTROL-BLIND"
    return r.result


def line(r: CombinationResult, done: int, total: int) -> str:
    why = ""
    if not r.counts_as_pass:
        why = " - " + ("; ".join(f"{c.name}: {c.observed}" for c in r.failed) or r.reason)
    return (f"[{done:>{len(str(total))}}/{total}] {verdict_word(r):<16} {r.combination.id} "
            f"({r.seconds:.1f}s){why}")


class Progress:
    def __init__(self, total: int, vms: int, out: TextIO) -> None:
        self.total, self.vms, self.out = total, vms, out
        self.done: list[CombinationResult] = []
        self.running: list[Running] = []
        self.began = time.monotonic()
        self.console = Console(file=out)
        self.live: Live | None = None
        if self.console.is_terminal:
            self.live = Live(self._view(), console=self.console, refresh_per_second=4,
                             transient=False)

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.__enter__()
        else:
            print(f"rapido-mpio: matrix: {self.total} combinations, {self.vms} VMs at a time",
                  file=self.out, flush=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live is not None:
            self.live.update(self._view())
            self.live.__exit__(kind, value, tb)

    def tick(self, running: list[Running]) -> None:
        self.running = list(running)
        if self.live is not None:
            self.live.update(self._view())

    def finished(self, r: CombinationResult) -> None:
        self.done.append(r)
        if self.live is None:
            print(line(r, len(self.done), self.total), file=self.out, flush=True)
        else:
            self.running = [x for x in self.running if x.job.combination != r.combination]
            self.live.update(self._view())

    def remaining_seconds(self) -> float:
        """Left to run, over the VMs: the median finished combination times those not done,
        less what the running ones have already spent."""
        each = statistics.median(r.seconds for r in self.done) if self.done else GUESS_SECONDS
        now = time.monotonic()
        spent = sum(min(each, now - r.began) for r in self.running)
        left = (self.total - len(self.done)) * each - spent
        return max(0.0, left / self.vms)

    def _view(self) -> Group:
        elapsed = time.monotonic() - self.began
        good = sum(r.counts_as_pass for r in self.done)
        skipped = sum(r.result == "SKIPPED" for r in self.done)
        head = Text(f"matrix: {len(self.done)}/{self.total} done, {good} as expected, "
                    f"{skipped} skipped, {len(self.done) - good - skipped} not; "
                    f"{elapsed:.0f}s elapsed, about "
                    f"{self.remaining_seconds():.0f}s left ({self.vms} VMs at a time)")
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("combination")
        table.add_column("state")
        table.add_column("seconds", justify="right")
        now = time.monotonic()
        for r in self.running:
            table.add_row(r.job.combination.id, f"running: {r.step()}",
                          f"{now - r.began:.0f}")
        for d in self.done:
            if not d.counts_as_pass:
                style = "yellow" if d.result in ("SKIPPED", "UNTESTABLE") else "bold red"
                table.add_row(d.combination.id, Text(verdict_word(d), style=style),
                              f"{d.seconds:.1f}")
        return Group(head, table)
