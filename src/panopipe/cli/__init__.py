"""The command line: thin commands over the library API. Errors become one red line and an exit code."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

import typer
from typer.exceptions import TyperException

INTERRUPTED = 130
"""The exit code of a command stopped by Ctrl-C (as a shell reports SIGINT)."""
BROKEN_PIPE = 141
"""The exit code of a command whose reader closed its output (as a shell reports SIGPIPE)."""


def main(argv: list[str] | None = None) -> int:
    """Run ``panopipe`` with ``argv`` (default: the process arguments); the exit code."""
    from panopipe.cli import render
    from panopipe.cli.app import app
    from panopipe.errors import PanopipeError, StorageError, Terminated

    try:
        result = app(args=argv, prog_name="panopipe", standalone_mode=False)
    except SystemExit as exc:
        # Typer (`panopipe export | head`) and rich (a table or fields: `panopipe db current | true`) end a
        # command whose reader closed its output with 1, which means failed files here: 141 instead, as a
        # program that SIGPIPE ends
        closed = type(sys.stdout).__name__ == "PacifyFlushWrapper" or isinstance(
            exc.__context__, BrokenPipeError
        )
        if exc.code == 1 and closed:
            return BROKEN_PIPE
        raise
    except PanopipeError as exc:
        render.error(str(exc))
        return exc.exit_code
    except OSError as exc:  # a local file the library did not wrap (a full disk...): still one line
        render.error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        return StorageError.exit_code
    except (typer.Abort, KeyboardInterrupt):
        render.error("interrupted")
        return INTERRUPTED
    except Terminated:  # SIGTERM during `run`: its unfinished jobs were cancelled, as on Ctrl-C
        render.error("terminated")
        return Terminated.exit_code
    except TyperException as exc:  # usage errors, raised by the click that Typer vendors in a private module
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group without its command: its help, as before
            exc.show()  # type: ignore[attr-defined]
        else:
            render.error(_usage_line(exc))
        return exc.exit_code
    if result == INTERRUPTED:  # Typer turns Ctrl-C into this exit code, without a word
        render.error("interrupted")
    return result if isinstance(result, int) else 0


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[None]:
    """For a command that Ctrl-C stops (exit 0, after its summary): meanwhile the first SIGINT raises
    :class:`KeyboardInterrupt`, which the command takes for its stop, and every SIGINT after it is ignored for
    as long as the process lives. A second one had cut the stop short, exit 130: a Ctrl-C pressed twice, or
    ``timeout -s INT``, which signals the process and then its process group. Off the main thread nothing
    changes (signal handlers belong to it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is first:  # not stopped: as it was
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def _usage_line(error: TyperException) -> str:
    """The one line of a usage error (an unknown command or option, a bad value, a missing file), with the
    help option of the command it is about: ``No such option: --reell ...; see panopipe ls -h``."""
    message = "; ".join(line.strip() for line in error.format_message().splitlines() if line.strip())
    context = getattr(error, "ctx", None)  # click's UsageError has the context of its command
    if context is None or context.command.get_help_option(context) is None:
        return message
    return f"{message.removesuffix('.')}; see {context.command_path} {context.help_option_names[0]}"


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())


__all__ = ["BROKEN_PIPE", "INTERRUPTED", "ctrl_c_stops", "main", "run"]
