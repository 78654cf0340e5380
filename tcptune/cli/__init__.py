"""The command line: the only layer that imports Typer, and the one error boundary.

Each command group lives in its own module and registers itself on ``app``.
Modules keep heavy imports (scapy, psutil, tabulate) inside functions so that
``tcptune audit`` starts fast.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from tcptune.cli._app import app
from tcptune.errors import ExitCode, TcptuneError

# Each module adds its commands to `app` when imported.  One name per command group.
COMMAND_MODULES = (
    "inspect",  # show, explain
    "profiles",  # profiles list|show|validate, audit
    "apply",  # apply, rollback, snapshots
    "states",  # states
    "probe",  # probe syn|synack|fin-timeout|keepalive|tw-reuse|all
    "doctor",  # doctor
    "metrics",  # metrics
    "trace",  # trace
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"tcptune.cli.{_name}")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # --traceback is accepted anywhere on the line (tcptune audit --traceback ...).
    show_tb = "--traceback" in args or os.environ.get("TCPTUNE_TRACEBACK") == "1"
    args = [a for a in args if a != "--traceback"]
    try:
        app(args=args, prog_name="tcptune")
    except TcptuneError as exc:
        if show_tb:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"tcptune: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("tcptune: interrupted\n")
        sys.exit(ExitCode.signal(signal.SIGINT))
    except BrokenPipeError:
        # `tcptune show | head`: the reader went away; that is not an error.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(ExitCode.OK)
    except Exception as exc:  # a bug: one line unless --traceback, and a distinct exit code
        if show_tb:
            raise
        sys.stderr.write(
            f"tcptune: internal error: {type(exc).__name__}: {exc} (rerun with --traceback and report it)\n"
        )
        sys.exit(ExitCode.INTERNAL)
