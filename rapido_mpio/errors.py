"""Exit codes (an interface: git bisect run reads them) and the errors that carry them."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    PASS = 0
    FAIL = 1  # a dm-multipath regression
    UNTESTABLE = 125  # git bisect skip: this kernel cannot be tested
    SETUP = 255  # broken setup: aborts a git bisect instead of lying to it


class MpioError(Exception):
    """An expected problem: one sentence naming it and the fix, never a traceback."""

    exit_code = ExitCode.SETUP

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class SetupError(MpioError):
    """The host, the config or the inputs are wrong: no verdict is possible."""

    exit_code = ExitCode.SETUP


class UntestableKernel(MpioError):
    """This kernel cannot run the scenario (missing options or modules, panic before start)."""

    exit_code = ExitCode.UNTESTABLE


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, once the cleanup has run: `stopped` says what it ended, in words
    that are true ("QEMU was stopped" only when a QEMU ran and is gone)."""

    def __init__(self, stopped: str) -> None:
        super().__init__(stopped)
        self.stopped = stopped
