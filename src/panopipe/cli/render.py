"""Everything the CLI shows: tables and JSON on stdout, messages and progress on stderr.

Both consoles read no markup: messages, paths and cells are shown as written (``[steps.derive]``,
``s3://b/[a]/x.jpg``); styles are applied to :class:`~rich.text.Text` parts only.

How much goes to stderr is set once by :func:`configure` (the global ``--verbose`` and ``--quiet`` options):
quiet drops progress bars and info lines, keeping warnings, errors and the data on stdout; verbose adds the
library's debug log lines. Library code logs (``logging``), and its records are shown here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from panopipe.catalog.records import to_json_value
from panopipe.iterutil import by_message, examples

stdout = Console(highlight=False, markup=False, soft_wrap=True)
if not stdout.is_terminal:
    # Piped output is read by people with wide terminals and by grep: do not wrap rows at 80 columns.
    stdout = Console(highlight=False, markup=False, soft_wrap=True, width=400)
stderr = Console(stderr=True, highlight=False, markup=False)
"""Info lines and progress: silent with ``--quiet``."""
_alerts = Console(stderr=True, highlight=False, markup=False)
"""Warnings and errors: always shown."""


class _LogHandler(logging.Handler):
    """Shows the library's log records: warnings and errors as :func:`warn` and :func:`error` lines, others
    (info, and debug with ``--verbose``) as plain lines."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        # Structured records (the event handler's) carry what they are about as extras, not in the message.
        about = [str(value) for key in ("uri", "reason") if (value := getattr(record, key, None))]
        if about:
            message = f"{message}: {' '.join(about)}"
        if record.levelno >= logging.ERROR:
            error(message)
        elif record.levelno >= logging.WARNING:
            warn(message)
        else:
            stderr.print(Text(f"{record.name}: {message}", style="dim"))


_LOG_HANDLER = _LogHandler()


def configure(*, verbose: bool = False, quiet: bool = False) -> None:
    """Set how much the CLI shows on stderr: ``verbose`` adds debug log lines, ``quiet`` drops progress bars
    and info lines (warnings, errors and stdout's data stay)."""
    stderr.quiet = quiet and not verbose
    logger = logging.getLogger("panopipe")
    logger.setLevel(logging.DEBUG if verbose else logging.NOTSET)
    _LOG_HANDLER.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if _LOG_HANDLER not in logger.handlers:
        logger.addHandler(_LOG_HANDLER)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (never through rich, so scripts get plain JSON); a list of more
    than :data:`MANY_ROWS` items with one item per line (Python's JSON encoder is written in C only for
    output without indents: indenting 100,000 images in Python took about a second more)."""
    if isinstance(value, list) and len(value) > MANY_ROWS:
        items = (json.dumps(item, default=to_json_value, ensure_ascii=False) for item in value)
        sys.stdout.write("[\n  " + ",\n  ".join(items) + "\n]\n")
        return
    sys.stdout.write(json.dumps(value, indent=2, default=to_json_value, ensure_ascii=False) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"  # 10 digits: a position to the centimetre or better
    if isinstance(value, list | tuple):
        return ", ".join(map(_cell, value))
    return str(to_json_value(value))


def print_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], *, as_json: bool, title: str | None = None
) -> None:
    """Rows as a table on a terminal, or as a JSON list of objects with ``as_json``. No rows print no table:
    the caller's line on stderr says what the empty answer means."""
    if as_json:
        print_json([{column: to_json_value(row.get(column)) for column in columns} for row in rows])
        return
    if not rows:
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    many = len(rows) > MANY_ROWS  # on a terminal too: better lines the terminal wraps than minutes of layout
    if (stdout.is_terminal and not many) or not _print_plain(cells, columns, title, fit=not many):
        _print_table(cells, columns, title)


def _print_table(cells: list[list[str]], columns: Sequence[str], title: str | None) -> None:
    """Print ``cells`` under ``columns`` with rich, which wraps text at its spaces to fit the console, but never
    breaks a word (an id, a URI, a time: what is copied): a column without spaces is never wrapped, and where
    even the words do not fit, the table is as wide as they need (the terminal wraps its lines)."""
    wrapped, widths = [], []
    for i, column in enumerate(columns):
        texts = [column, *(row_cells[i] for row_cells in cells)]
        wrapped.append(any(len(text.split()) > 1 for text in texts))
        words = [_width(word) for text in texts for word in text.split()]
        widths.append(max(words, default=0) if wrapped[-1] else max(map(_width, texts)))
    needed = sum(widths) + 3 * len(widths) - 1
    width = needed if needed > stdout.width else None
    table = Table(title=title, show_edge=False, header_style="bold", width=width)
    for column, wraps, least in zip(columns, wrapped, widths, strict=True):
        table.add_column(column, no_wrap=not wraps, min_width=least)
    for row_cells in cells:
        table.add_row(*row_cells)
    stdout.print(table, crop=False)


MANY_ROWS = 1000
"""Tables of more rows than this, and every table that is not shown on a terminal, are laid out by
:func:`_print_plain` (rich lays out a table in about a millisecond per row: minutes for 100,000 images); JSON
lists of more items than this are printed an item per line (:func:`print_json`)."""


def _print_plain(cells: list[list[str]], columns: Sequence[str], title: str | None, *, fit: bool) -> bool:
    """Print ``cells`` under ``columns`` as rich prints such a table when nothing needs folding, in a single
    pass; ``False`` (nothing printed) when a cell spans lines or, with ``fit``, when the table is wider than
    the console: rich folds those."""
    widths = [_width(column) for column in columns]
    for row_cells in cells:
        for i, text in enumerate(row_cells):
            if "\n" in text:
                return False
            widths[i] = max(widths[i], _width(text))
    if fit and sum(widths) + 3 * len(widths) - 1 > stdout.width:
        return False

    def line(texts: Sequence[str], bar: str) -> str:
        return bar.join(
            f" {text}{' ' * (width - _width(text))} " for text, width in zip(texts, widths, strict=True)
        )

    lines = [title] if title else []
    lines += [line(columns, "┃"), "╇".join("━" * (width + 2) for width in widths)]
    lines += (line(row_cells, "│") for row_cells in cells)
    stdout.file.write("\n".join(lines) + "\n")
    return True


def _width(text: str) -> int:
    """The cells ``text`` takes on a terminal (wide characters take two)."""
    return len(text) if text.isascii() else cell_len(text)


def print_fields(values: dict[str, Any], *, as_json: bool, marked: Iterable[str] = ()) -> None:
    """One record as ``field: value`` lines (``*`` marks ``marked`` fields), or as a JSON object."""
    if as_json:
        print_json({key: to_json_value(value) for key, value in values.items()})
        return
    marked = set(marked)
    width = max(map(len, values), default=0)
    for key, value in values.items():
        flag = (" *edited", "yellow") if key in marked else ""
        stdout.print(Text.assemble((f"{key:<{width}}", "bold"), f"  {_cell(value)}", flag))


def success(message: str) -> None:
    """A confirmation on stderr, one line however long (a URL or path in it is not broken across lines)."""
    stderr.print(Text(message, style="green"), soft_wrap=True)


def warn(message: str) -> None:
    """A warning line on stderr."""
    _alerts.print(Text.assemble(("warning:", "yellow"), f" {_one_line(message)}"), soft_wrap=True)


def error(message: str) -> None:
    """One red error line on stderr."""
    _alerts.print(Text.assemble(("error:", "red"), f" {_one_line(message)}"), soft_wrap=True)


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _one_line(message: str) -> str:
    """``message`` with its control characters written as escapes (a file named with a newline): a script
    reads one line per error or warning."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], message)


def first_line(message: str | None) -> str | None:
    """The first line of a message whose further lines are details (see :func:`print_details`)."""
    return None if message is None else message.partition("\n")[0]


def print_details(messages: Iterable[str | None], *, console: Console = stderr) -> None:
    """The lines after the first of each distinct message (e.g. a configuration to paste), once each, so
    a hundred jobs failing for one reason show it once."""
    details = {message.partition("\n")[2]: None for message in messages if message}
    for detail in filter(None, details):
        console.print(detail, soft_wrap=True)


def warn_each(problems: Iterable[tuple[str, str, str]], outcome: str) -> None:
    """One warning line per step and message of ``(step, subject, message)`` problems, with the message's first
    line: ``STEP SUBJECT OUTCOME: ...``, or ``STEP OUTCOME for N subjects: ... (the first few)`` when several
    share it (:func:`~panopipe.iterutil.by_message`: a thousand shots failing for one reason make one line);
    then the details once each."""
    groups = by_message(problems)
    for (step, _), (message, subjects) in groups.items():
        if len(subjects) == 1:
            warn(f"{step} {subjects[0]} {outcome}: {first_line(message)}")
        else:
            many = f"{step} {outcome} for {len(subjects)} subjects"
            warn(f"{many}: {first_line(message)} ({examples(subjects, len(subjects))})")
    print_details((message for message, _ in groups.values()), console=_alerts)


@contextlib.contextmanager
def staged_progress(*, in_bytes: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """A ``(stage, done, total)`` callback that drives one progress bar per stage on a terminal, and does
    nothing elsewhere. ``in_bytes`` shows sizes and throughput instead of counts."""
    if stderr.quiet or not stderr.is_terminal:
        yield lambda stage, done, total: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts = (DownloadColumn(), TransferSpeedColumn()) if in_bytes else (MofNCompleteColumn(),)
    columns = (TextColumn("{task.description}"), BarColumn(), *counts, TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=None)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


@contextlib.contextmanager
def progress_bar(description: str, *, in_bytes: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback that drives a progress bar on a terminal, and does nothing elsewhere."""
    with staged_progress(in_bytes=in_bytes) as update:
        yield lambda done, total: update(description, done, total)


__all__ = [
    "MANY_ROWS",
    "configure",
    "error",
    "examples",
    "first_line",
    "print_details",
    "print_fields",
    "print_json",
    "print_rows",
    "progress_bar",
    "staged_progress",
    "stderr",
    "stdout",
    "success",
    "warn",
    "warn_each",
]
