"""The one exception type tcptune raises on purpose, and its exit codes.

The CLI is the single error boundary: it prints ``str(error)`` as one line and
exits with ``error.exit_code``.  Messages say what went wrong, where (file:line
or key) and how to fix it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1  # audit drift, a probe that differs, a rejected write that was rolled back
    BAD_INPUT = 2  # malformed file, unknown key, bad option value, unknown snapshot
    PRIVILEGES = 3  # needs root / CAP_NET_ADMIN / CAP_SYS_ADMIN, or /proc/sys is read-only
    INTERNAL = 70  # EX_SOFTWARE (sysexits.h): a bug in tcptune, not a finding and not bad input

    @staticmethod
    def signal(signum: int) -> int:
        """The shell's code for a run ended by signal ``signum`` (SIGINT -> 130, SIGTERM -> 143)."""
        return 128 + int(signum)


class TcptuneError(Exception):
    """An error with a message meant for the user and the exit code it maps to."""

    def __init__(self, message: str, exit_code: int = ExitCode.BAD_INPUT, *, hint: str | None = None):
        self.message = message
        self.exit_code = int(exit_code)
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message
