"""The command line: thin commands over the library API. Errors become one red line and an exit code."""

from __future__ import annotations

import typer
from typer.exceptions import TyperException


def main(argv: list[str] | None = None) -> int:
    """Run ``panopipe`` with ``argv`` (default: the process arguments); the exit code."""
    from panopipe.cli import render
    from panopipe.cli.app import app
    from panopipe.errors import PanopipeError, StorageError

    try:
        result = app(args=argv, prog_name="panopipe", standalone_mode=False)
    except PanopipeError as exc:
        render.error(str(exc))
        return exc.exit_code
    except OSError as exc:  # a local file the library did not wrap (a full disk...): still one line
        render.error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        return StorageError.exit_code
    except (typer.Abort, KeyboardInterrupt):
        render.error("interrupted")
        return 130
    except TyperException as exc:  # usage errors: Typer prints them with the command's usage line
        # Usage errors are click's (vendored in a private module), which add show() to TyperException.
        exc.show()  # type: ignore[attr-defined]
        return exc.exit_code
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    raise SystemExit(main())


__all__ = ["main", "run"]
