"""Tables: large or piped ones are laid out in one pass, exactly as rich lays them out (rich is the oracle)."""

from __future__ import annotations

import io
import json
import random

import pytest
from rich.console import Console

from panopipe.cli import render

COLUMNS = ["id", "reel", "frame", "lat", "note"]


def rows(count: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    words = ["", "ok", "Müller", "東京", "s3://b/[a]/x.jpg", "a|b", "x" * 30]
    return [
        {
            "id": f"{rng.getrandbits(32):08x}",
            "reel": rng.choice(["R001", "R2", None]),
            "frame": rng.choice([None, rng.randrange(10 ** rng.randrange(1, 7))]),
            "lat": rng.choice([None, 48 + rng.random()]),
            "note": rng.choice(words),
        }
        for _ in range(count)
    ]


def printed(monkeypatch: pytest.MonkeyPatch, table_rows, *, rich_only: bool, title: str | None = None) -> str:
    out = io.StringIO()
    monkeypatch.setattr(
        render, "stdout", Console(file=out, highlight=False, markup=False, soft_wrap=True, width=400)
    )
    if rich_only:
        monkeypatch.setattr(render, "_print_plain", lambda *args, **kwargs: False)
    render.print_rows(table_rows, COLUMNS, as_json=False, title=title)
    return out.getvalue()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("title", [None, "would change (dry run)"])
def test_the_one_pass_layout_is_rich_s(monkeypatch: pytest.MonkeyPatch, seed: int, title: str | None):
    table_rows = rows(50, seed)
    plain = printed(monkeypatch, table_rows, rich_only=False, title=title)
    assert plain == printed(monkeypatch, table_rows, rich_only=True, title=title)
    assert "東京" in plain or "Müller" in plain


def test_an_empty_table_and_a_cell_of_several_lines_are_rich_s(monkeypatch: pytest.MonkeyPatch):
    assert printed(monkeypatch, [], rich_only=False) == printed(monkeypatch, [], rich_only=True)
    folded = [{"id": "a", "note": "first line\nsecond line"}]
    assert printed(monkeypatch, folded, rich_only=False) == printed(monkeypatch, folded, rich_only=True)
    assert "second line" in printed(monkeypatch, folded, rich_only=False)


def test_a_table_wider_than_the_console_is_left_to_rich_which_folds_it(monkeypatch: pytest.MonkeyPatch):
    wide = [{"id": "a", "note": "word " * 100}]
    assert printed(monkeypatch, wide, rich_only=False) == printed(monkeypatch, wide, rich_only=True)


def test_a_long_table_on_a_narrow_terminal_is_laid_out_in_one_pass_unfolded(monkeypatch: pytest.MonkeyPatch):
    many = rows(render.MANY_ROWS + 1)
    wide = printed(monkeypatch, many, rich_only=False)  # piped: 400 columns, nothing to fold
    out = io.StringIO()
    terminal = Console(
        file=out, force_terminal=True, color_system=None, highlight=False, markup=False, width=60
    )
    monkeypatch.setattr(render, "stdout", terminal)
    monkeypatch.setattr(render, "Table", None)  # rich's table is never laid out

    render.print_rows(many, COLUMNS, as_json=False)

    assert out.getvalue() == wide and max(map(len, wide.splitlines())) > 60


def test_a_long_json_list_has_an_item_per_line_and_the_same_values(capsys: pytest.CaptureFixture[str]):
    few, many = rows(3), rows(render.MANY_ROWS + 1)
    for table_rows, lines in ((few, 3 * 7 + 2), (many, len(many) + 2)):
        render.print_rows(table_rows, COLUMNS, as_json=True)
        out = capsys.readouterr().out
        assert json.loads(out) == [{column: row.get(column) for column in COLUMNS} for row in table_rows]
        assert out.count("\n") == lines  # indented: an object over 7 lines; long: one line each


@pytest.mark.parametrize("width", [40, 80])
def test_on_a_narrow_terminal_words_never_break(monkeypatch: pytest.MonkeyPatch, width: int):
    """Ids, URIs, times and headers are whole on one line: text wraps at its spaces, and a table whose words
    cannot fit is as wide as they need (the terminal wraps its lines)."""
    table_rows = [
        {
            "id": "bad0d438",
            "reel": "R001",
            "frame": 1,
            "lat": 48.13715508,
            "note": "s3://b/R001/cam0/0001.jpg",
        },
        {"id": "bbb15545", "reel": "R001-long", "frame": 123456, "lat": None, "note": "a reason " * 8},
    ]
    out = io.StringIO()
    terminal = Console(
        file=out, force_terminal=True, color_system=None, highlight=False, markup=False, width=width
    )
    monkeypatch.setattr(render, "stdout", terminal)

    render.print_rows(table_rows, COLUMNS, as_json=False)

    words = out.getvalue().split()
    for whole in ("bad0d438", "bbb15545", "R001-long", "123456", "48.13715508", "s3://b/R001/cam0/0001.jpg"):
        assert whole in words, out.getvalue()
    assert words.count("reason") == 8
    longest = ("bbb15545", "R001-long", "123456", "48.13715508", "s3://b/R001/cam0/0001.jpg")
    words_width = sum(map(len, longest)) + 3 * len(longest) - 1  # cells padded by one, between bars
    assert max(map(len, out.getvalue().splitlines())) == max(width, words_width)
