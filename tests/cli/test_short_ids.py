"""Ids people can use (issue 12, item 6): `ls` and `show` display short ids, `show`, `history` and `undo`
take them, an ambiguous one lists its candidates (exit 3), and the lookups are index range scans."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from panopipe.catalog import Catalog, ImageRecord
from panopipe.catalog.schema import images, uuid_tail
from panopipe.catalog.types import new_ids
from panopipe.cli import main

A = "0190f3a2-7c1e-7a31-9f00-2b7c5d1e4f11"
B = "0190f3a2-7c1e-7a31-9f00-2b7c5d1e9a00"  # shares 8 characters of its last group with A
C = "0190f3a2-7c1e-7a32-8000-aaaa00000000"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def frame(image_id: str, n: int) -> ImageRecord:
    return ImageRecord(
        uri=f"/survey/R001/cam0/frame_{n:06d}.jpg",
        id=image_id,
        size=1000 + n,
        captured_at=datetime(2024, 5, 1, 8, 0, tzinfo=UTC) + timedelta(seconds=n),
        reel="R001",
        frame=n,
        alt=500.0,
    )


@pytest.fixture
def location(catalog_url: str) -> str:
    with Catalog.open(catalog_url) as catalog:
        catalog.upsert_images([frame(image_id, n) for n, image_id in enumerate((A, B, C))])
    return catalog_url


def test_ls_and_show_display_the_shortest_unique_start_of_the_last_group(capsys, location: str):
    code, out, _ = run(capsys, "ls", "--fields", "id,frame", "--catalog", location)
    assert code == 0
    for short in ("2b7c5d1e4", "2b7c5d1e9", "aaaa0000"):
        assert f" {short} " in out
    assert A not in out and "0190f3a2" not in out
    code, out, _ = run(capsys, "ls", "--json", "--catalog", location)
    assert {row["id"] for row in json.loads(out)} == {A, B, C}  # scripts get full ids
    code, out, _ = run(capsys, "show", "2b7c5d1e4", "--json", "--catalog", location)
    assert code == 0 and json.loads(out)["id"] == A and json.loads(out)["short_id"] == "2b7c5d1e4"
    for given in (A, A.replace("-", ""), A.upper(), "aaaa", "AAAA0000"):
        code, out, _ = run(capsys, "show", given, "--json", "--catalog", location)
        assert code == 0 and json.loads(out)["id"] in (A, C)
    # the start of a full id, as people copy it, when one image alone has it
    for given in (C[:18], C[:18].replace("-", ""), C[:28]):
        code, out, err = run(capsys, "show", given, "--json", "--catalog", location)
        assert (code, json.loads(out)["id"]) == (0, C), (given, err)


@pytest.mark.parametrize(
    "given, message",
    [
        ("2b7c5d1e", f"error: image id '2b7c5d1e' is ambiguous: it starts {A}, {B}; give more characters"),
        (
            "0190f3a2",
            "error: image id '0190f3a2' starts several full ids (ids made together share their first "
            "characters): give its short id, the start of the last group, as `panopipe ls` shows it",
        ),
        ("ffffffff", "error: no image with id 'ffffffff'"),
        ("2b7c-5d1e", "error: no image with id '2b7c-5d1e'"),  # not the start of a full id either
        ("2b7", "error: '2b7' is not an image id: give the full id, or its short id"),
        ("2b7c-5d", "error: '2b7c-5d' is not an image id"),
    ],
)
def test_an_ambiguous_unknown_or_malformed_id_is_a_catalog_error(capsys, location: str, given, message):
    # `show ID` and the --id filter of every command that selects images alike, on both backends
    edit = ["edit", "--id", given, "--set", "alt=1", "--reason", "RTK"]
    for command in (["show", given], ["ls", "--id", given], edit):
        code, out, err = run(capsys, *command, "--catalog", location)
        assert (code, out) == (3, "") and err.startswith(message) and len(err.splitlines()) == 1, command


def test_the_id_filter_takes_short_ids(capsys, location: str):
    code, out, _ = run(capsys, "ls", "--id", "2b7c5d1e4", "--id", "aaaa", "--json", "--catalog", location)
    assert code == 0 and [row["id"] for row in json.loads(out)] == [A, C]


def test_history_shows_one_line_per_batch_and_undo_takes_its_short_id(capsys, location: str):
    for alt, reason in (("12.5", "RTK altitude"), ("13", "second pass")):
        args = (
            "edit",
            "--id",
            A,
            "--id",
            C,
            "--set",
            f"alt={alt}",
            "--reason",
            reason,
            "--catalog",
            location,
        )
        assert run(capsys, *args)[0] == 0
    code, out, _ = run(capsys, "history", "--json", "--catalog", location)
    batches = json.loads(out)
    assert code == 0 and [(b["reason"], b["images"], b["fields"], b["changes"]) for b in batches] == [
        ("RTK altitude", 2, 1, 2),
        ("second pass", 2, 1, 2),
    ]
    code, out, _ = run(capsys, "history", "--catalog", location)
    lines = [line for line in out.splitlines() if "altitude" in line or "second pass" in line]
    assert len(lines) == 2 and all(batch["batch"][-12:][:8] in out for batch in batches)
    code, out, _ = run(capsys, "history", "--detail", "--json", "--catalog", location)
    assert sorted((e["image_id"], e["new_value"]) for e in json.loads(out)) == [
        (A, 12.5),
        (A, 13.0),
        (C, 12.5),
        (C, 13.0),
    ]
    code, out, _ = run(capsys, "history", "aaaa0000", "--detail", "--catalog", location)
    assert code == 0 and " aaaa0000 " in out and " 2b7c5d1e4 " not in out
    first = batches[0]["batch"][-12:][:8]
    code, out, _ = run(capsys, "history", "--batch", first, "--json", "--catalog", location)
    assert code == 0 and {e["batch"] for e in json.loads(out)} == {batches[0]["batch"]}
    code, out, _ = run(capsys, "undo", first, "--dry-run", "--json", "--catalog", location)
    assert code == 0 and json.loads(out)["changes"] == []  # the later batch still holds both fields
    code, out, err = run(capsys, "undo", batches[1]["batch"][-12:][:8], "--catalog", location)
    assert code == 0 and "2 value(s) restored" in out + err
    code, out, _ = run(capsys, "show", "aaaa0000", "--json", "--catalog", location)
    assert json.loads(out)["alt"] == 12.5
    code, _, err = run(capsys, "undo", "ffffffff", "--catalog", location)
    assert code == 3 and err.startswith("error: no edit batch with id 'ffffffff'")


def test_short_ids_are_index_range_scans_on_both_backends(catalog_url: str):
    with Catalog.open(catalog_url) as catalog:
        ids = new_ids(300)  # one ingest: they share their first 15 characters
        catalog.upsert_images([frame(image_id, n) for n, image_id in enumerate(ids)])
        shown = catalog.short_ids(ids[:50])  # many: one pass over the index
        assert catalog.short_ids(ids[:4]) == {i: shown[i] for i in ids[:4]}  # few: two seeks each
        tails = [i.replace("-", "")[-12:] for i in ids]
        for image_id, short in shown.items():
            own = image_id.replace("-", "")[-12:]
            others = [t for t in tails if t != own]
            assert len(short) >= 8 and own.startswith(short)
            assert not any(t.startswith(short) for t in others)
            assert len(short) == 8 or any(t.startswith(short[:-1]) for t in others)  # the shortest such
        key = uuid_tail(images.c.id)
        query = sa.select(images.c.id).where(key >= "ab", key < "abg")
        with catalog.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                plan = " ".join(
                    str(r) for r in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {_sql(conn, query)}"))
                )
            else:
                conn.execute(sa.text("SET enable_seqscan = off"))
                plan = " ".join(str(r) for r in conn.execute(sa.text(f"EXPLAIN {_sql(conn, query)}")))
        assert "ix_images_id_tail" in plan


def _sql(conn: sa.Connection, query: sa.Select[tuple[str]]) -> str:
    return str(query.compile(conn, compile_kwargs={"literal_binds": True}))
