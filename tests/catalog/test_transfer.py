"""Moving a SQLite catalog to PostgreSQL: exact copy, resume after interruption, refusals, verification."""

from __future__ import annotations

import math
import random
import sqlite3
import struct
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from tests.conftest import require
from tests.pipeline.captures import RIG, add_rig_shots

from panopipe.catalog import Catalog, FileCopy, ImageRecord, Selection, create_catalog_engine, upgrade
from panopipe.catalog.engine import catalog_url, mask_url
from panopipe.catalog.flags import Flag
from panopipe.catalog.routes import Location, Route
from panopipe.catalog.schema import artifacts, edits, file_copies, image_flags, jobs, routes
from panopipe.catalog.transfer import (
    TABLES,
    ReaderName,
    TransferProgress,
    default_reader,
    migrate_catalog,
    verify_transfer,
)
from panopipe.catalog.transfer.copy_format import json_number_text, time_micros
from panopipe.catalog.transfer.copy_source import Source, _reader_module
from panopipe.catalog.transfer.copy_target import _copy_out, reading
from panopipe.catalog.types import new_id
from panopipe.config import Settings
from panopipe.errors import CatalogError, ConfigError
from panopipe.executors import InlineExecutor
from panopipe.pipeline import plan, run
from panopipe.pipeline.estimate import estimate

T0 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


def _image(n: int) -> ImageRecord:
    return ImageRecord(
        uri=f"/survey/R001/cam{n % 4}/frame_{n:06d}.jpg",
        size=1000 + n,
        content_hash=f"{n:064x}",
        modified_at=T0,
        captured_at=T0 + timedelta(seconds=n / 7),
        lat=48.137154 + n * 1.1e-7 + 1e-15,
        lon=11.576124 - n / 3e5,
        alt=None if n % 5 == 0 else 519.0 + n / 3,
        heading=(n * 37.1) % 360,
        make="Acme",
        model="Rig-4 “Ünïcode”",
        camera_index=n % 4,
        width=4096,
        height=2048,
        reel="R001",
        frame=n,
        extra={"z": [1, 2.5, None], "a": {"nested": True, "tiny": 1e-05}, "note": "x\ty\n"}
        if n % 3
        else None,
        status="failed" if n == 7 else "ok",
        error="unreadable" if n == 7 else None,
    )


@pytest.fixture
def source(tmp_path: Path) -> str:
    """A SQLite catalog with images, edits (one batch undone), artifacts and jobs."""
    path = str(tmp_path / "catalog.db")
    with Catalog.open(path) as catalog:
        ids = catalog.upsert_images(_image(n) for n in range(60)).added
        catalog.mark_deleted([_image(3).uri])
        kept = catalog.apply_edit(
            catalog.plan_edit(Selection(ids=tuple(ids[:10])), assign={"alt": 12.5}),
            reason="GPS fix",
            author="ana",
        )
        undone = catalog.apply_edit(
            catalog.plan_edit(Selection(ids=tuple(ids[5:25])), shift_time_s=1.5), reason="clock", author="bo"
        )
        catalog.undo(undone, author="bo")
        catalog.apply_edit(
            catalog.plan_edit(Selection(ids=(ids[1],)), assign={"lat": 47.1, "reel": "R9"}),
            reason="x",
            author="c",
        )
        assert kept
        for thumbnail in (64, 128):
            catalog.push_project_config(
                {"steps": {"derive": {"thumbnail": thumbnail}}},
                author="ana",
                reason=f"thumbnails {thumbnail}",
            )
        flags = [Flag(ids[n], "gps-outlier", n * 1.5 + 0.1, f"{n} m off") for n in range(5)]
        catalog.record_qc(
            ids, ["gps-outlier"], [*flags, Flag(ids[9], "no-position")], run=new_id(), qc_version="1"
        )
        catalog.record_copies(  # the capture folder's files, left behind by a sync (one without a time)
            [
                FileCopy(
                    f"/backup{_image(n).uri}", _image(n).uri, f"{n:064x}", 1000 + n, None, T0 if n else None
                )
                for n in range(8)
            ]
        )
        line = ((11.576, 48.137), (11.577, 48.1372))
        catalog.add_route(Route("R-1", line, (0.0, 0.25), None, "mi", "r.geojson"))
        catalog.record_locations(
            ids[:4], [Location(i, "R-1", n / 7, 1.5 - n) for n, i in enumerate(ids[:3])], []
        )
        job_ids = [new_id() for _ in range(12)]
        with catalog.engine.begin() as conn:
            conn.execute(
                jobs.insert(),
                [
                    {
                        "id": job_id,
                        "step": "stitch",
                        "subject": f"shot-{i}",
                        "fingerprint": f"{i:064x}",
                        "status": "done" if i % 2 else "failed",
                        "attempts": i,
                        "log": "line 1\nline 2" if i % 2 else None,
                        "submitted_at": T0,
                        "finished_at": T0 + timedelta(minutes=i) if i % 2 else None,
                    }
                    for i, job_id in enumerate(job_ids)
                ],
            )
            conn.execute(
                artifacts.insert(),
                [
                    {
                        "step": "thumb",
                        "subject": ids[i % len(ids)],
                        "name": f"t{i}",
                        "image_id": None if i % 7 == 0 else ids[i % len(ids)],
                        "step_version": "1",
                        "params_hash": "p" * 64,
                        "fingerprint": f"{i:064x}",
                        "output_uri": f"s3://bucket/thumbs/{i}.jpg",
                        "output_size": i * 1000,
                        "job_id": job_ids[i % len(job_ids)],
                        "orphaned": i % 9 == 0,
                        "created_at": T0 + timedelta(seconds=i),
                    }
                    for i in range(45)
                ],
            )
    return path


@pytest.fixture(params=["compiled", "python"])
def reader(request: pytest.FixtureRequest) -> ReaderName:
    """Each way of reading the SQLite source: the compiled reader and the pure-Python one."""
    if request.param == "compiled":
        require(
            default_reader() == "compiled", "the compiled SQLite reader (install panopipe with a C compiler)"
        )
    return request.param


def _snapshot(location: str) -> dict[str, object]:
    with Catalog.open(location, create=False) as catalog:
        everything = Selection(include_deleted=True)
        with catalog.engine.connect() as conn:
            tables = {
                table.name: conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
                for table in (edits, artifacts, jobs, image_flags, routes, file_copies)
            }
        return {
            "images": list(catalog.images(everything)),
            "visible": catalog.count(),
            "history": catalog.history(),
            "near": [i.id for i in catalog.images(Selection(near=(48.137154, 11.576124), radius_m=2))],
            "config": [v.to_dict() for v in catalog.project_config_history()],
            **tables,
        }


def test_migration_is_exact_and_the_catalog_works_unchanged(source: str, postgres_url: str):
    seen: list[TransferProgress] = []
    report = migrate_catalog(source, postgres_url, batch_size=16, progress=seen.append)
    assert report.ok and report.verified and not report.resumed and report.create_schema
    assert {t.table: t.copied_rows for t in report.tables} == {
        "images": 60,
        "jobs": 12,
        "edits": 31,
        "artifacts": 45,
        "project_config": 2,
        "image_flags": 6,
        "routes": 1,
        "file_copies": 8,
    }
    assert [c.table for c in report.checks] == [
        "images",
        "jobs",
        "project_config",
        "routes",
        "artifacts",
        "edits",
        "file_copies",
        "image_flags",
    ]
    assert ("copy", "images", 60, 60) in {(p.phase, p.table, p.rows_done, p.rows_total) for p in seen}
    assert _snapshot(postgres_url) == _snapshot(source)
    with Catalog.open(postgres_url, create=False) as target, Catalog.open(source) as original:
        for image in original.images(Selection(include_deleted=True)):
            copied = target.get(image.id)
            for name in ("lat", "lon", "alt", "heading"):
                left, right = getattr(image, name), getattr(copied, name)
                assert (left is None and right is None) or struct.pack("<d", left) == struct.pack("<d", right)
        with target.engine.connect() as conn:
            types = dict(
                conn.execute(
                    sa.text(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = 'images' AND table_schema = current_schema()"
                    )
                ).all()
            )
        assert (types["lat"], types["captured_at"], types["extra"], types["id"]) == (
            "double precision",
            "timestamp without time zone",
            "jsonb",
            "uuid",
        )
        # Sequences continue after the copied ids: a new edit gets the next id.
        image_id = next(target.images()).id
        target.apply_edit(
            target.plan_edit(Selection(ids=(image_id,)), assign={"alt": 1.0}), reason="r", author="a"
        )
        assert target.history()[-1].id == 32
        with target.engine.begin() as conn:
            new = conn.execute(
                artifacts.insert().returning(artifacts.c.id),
                {
                    "step": "s",
                    "subject": "x",
                    "name": "n",
                    "step_version": "1",
                    "params_hash": "p",
                    "fingerprint": "f",
                    "output_uri": "u",
                    "created_at": T0,
                },
            ).scalar_one()
        assert new == 46


def test_a_second_move_into_the_same_database_at_once_is_refused_in_one_line(source: str, postgres_url: str):
    """Two `db migrate`s into one database at once: the second ended in a traceback after dropping the
    constraints the first was about to rebuild. It is refused while the first runs, and verifies after."""
    refused: list[str] = []

    def second_move(update: TransferProgress) -> None:
        if not refused:
            with pytest.raises(CatalogError) as error:
                migrate_catalog(source, postgres_url, batch_size=16)
            refused.append(str(error.value))

    report = migrate_catalog(source, postgres_url, batch_size=16, progress=second_move)

    target = mask_url(catalog_url(postgres_url))
    assert report.ok and refused == [
        f"another panopipe db migrate into {target} is running: wait for it to end, then run this again (it "
        "verifies the copy, or resumes it)"
    ]
    again = migrate_catalog(source, postgres_url, batch_size=16)
    assert again.ok and again.rows_copied == 0 and again.already_complete and not again.resumed


def test_an_interrupted_move_resumes_without_duplicates(source: str, postgres_url: str):
    class Interrupted(Exception):
        pass

    batches = 0

    def interrupt(update: TransferProgress) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate_catalog(source, postgres_url, batch_size=16, progress=interrupt)
    plan = migrate_catalog(source, postgres_url, batch_size=16, dry_run=True)
    assert plan.resumed and not plan.create_schema and plan.rows_copied == 0 and not plan.checks
    assert {t.table: t.present_rows for t in plan.tables} == {
        "images": 32,
        "jobs": 0,
        "edits": 0,
        "artifacts": 0,
        "project_config": 0,
        "image_flags": 0,
        "routes": 0,
        "file_copies": 0,
    }
    report = migrate_catalog(source, postgres_url, batch_size=16)
    assert report.ok and report.resumed
    assert {t.table: (t.present_rows, t.copied_rows) for t in report.tables}["images"] == (32, 28)
    again = migrate_catalog(source, postgres_url, batch_size=16)
    assert again.ok and again.rows_copied == 0 and again.already_complete and not again.resumed
    assert _snapshot(postgres_url) == _snapshot(source)


def test_a_move_without_verification_copies_the_same_rows(source: str, postgres_url: str):
    report = migrate_catalog(source, postgres_url, batch_size=16, verify=False)
    assert report.ok and not report.verified and not report.checks and report.rows_copied > 0
    assert all(check.ok for check in verify_transfer(source, postgres_url, batch_size=16))
    assert _snapshot(postgres_url) == _snapshot(source)


def test_tampering_on_the_target_is_reported(source: str, postgres_url: str):
    assert migrate_catalog(source, postgres_url).ok
    engine = create_catalog_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE images SET lat = lat + 1e-12 WHERE frame = 40"))
        conn.execute(sa.text("UPDATE edits SET new_value = '12.50' WHERE id = 1"))
        conn.execute(sa.text("UPDATE jobs SET log = NULL WHERE attempts = 1"))
    checks = {check.table: check for check in verify_transfer(source, postgres_url)}
    # jsonb keeps a number's scale (12.50 is printed as 12.50, not 12.5), and so does the checksum.
    assert {name for name, check in checks.items() if not check.ok} == {"images", "edits", "jobs"}
    assert checks["images"].source_rows == checks["images"].target_rows == 60
    report = migrate_catalog(source, postgres_url)
    assert not report.ok and [c.table for c in report.mismatches] == ["images", "jobs", "edits"]
    with pytest.raises(
        CatalogError,
        match=r"images \(60 rows in the source, 60 in the target, content differs\), .*\. A move continues "
        r"after the rows already copied .*: if the source was written to since the move began, migrate again "
        r"into an empty database$",
    ):
        report.raise_for_mismatch()
    with engine.begin() as conn:  # a row after the source's last key
        conn.execute(
            sa.text(
                "INSERT INTO artifacts (step, subject, name, step_version, params_hash, fingerprint, output_uri,"
                " orphaned, created_at) VALUES ('x', 'y', 'z', '1', 'p', 'f', 'u', false, now())"
            )
        )
    engine.dispose()
    (artifacts_check,) = [c for c in verify_transfer(source, postgres_url) if c.table == "artifacts"]
    assert (artifacts_check.ok, artifacts_check.source_rows, artifacts_check.target_rows) == (False, 45, 46)


def test_targets_that_are_not_this_catalog_are_refused(source: str, postgres_url: str, tmp_path: Path):
    engine = create_catalog_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (id integer)"))
    with pytest.raises(CatalogError, match=r"not panopipe's \(customers\)"):
        migrate_catalog(source, postgres_url, dry_run=True)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE customers"))
    engine.dispose()

    other = str(tmp_path / "other.db")
    with Catalog.open(other) as catalog:
        catalog.upsert_images(_image(n) for n in range(5))
    assert migrate_catalog(other, postgres_url).ok
    with pytest.raises(CatalogError, match=f"already holds 5 rows and no move from {source} is under way"):
        migrate_catalog(source, postgres_url)

    with Catalog.open(postgres_url) as target, target.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(CatalogError, match="at schema 0000"):
        migrate_catalog(source, postgres_url)


def _version(url: str) -> str:
    with closing(psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_a_catalog_that_no_move_is_filling_is_only_verified_never_written(postgres_url: str, tmp_path: Path):
    """A working catalog of other images, as many rows as the source: taken for a finished copy by its counts,
    it had been marked 'being migrated' for good and written to (the first foreign key failed with a
    traceback), or, without verification, reported copied. It is now verified and written nothing."""
    mine, theirs = str(tmp_path / "mine.db"), str(tmp_path / "theirs.db")
    with Catalog.open(mine) as catalog:
        catalog.upsert_images(_image(n) for n in range(5))
    with Catalog.open(postgres_url) as target:  # other ids (newer), the same count
        target.upsert_images(_image(n) for n in range(5, 10))
    before = _snapshot(postgres_url)

    report = migrate_catalog(mine, postgres_url)
    assert report.verified and [c.table for c in report.mismatches] == ["images"] and report.rows_copied == 0
    with pytest.raises(CatalogError, match="run without --no-verify to check that they are a finished copy"):
        migrate_catalog(mine, postgres_url, verify=False)
    with Catalog.open(theirs) as catalog:
        catalog.upsert_images(_image(n) for n in range(6))
    with pytest.raises(
        CatalogError, match=r"already holds 5 rows and no move from .*theirs\.db is under way"
    ):
        migrate_catalog(theirs, postgres_url)
    assert _version(postgres_url) == "0012" and _snapshot(postgres_url) == before

    # A finished copy is verified again, and nothing more; without verification, refused as above.
    mine_url = postgres_url.replace("search_path%3D", "search_path%3Dmine_")
    with psycopg.connect(postgres_url.partition("?")[0], autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "mine_{postgres_url.rpartition("%3D")[2]}"')
    assert migrate_catalog(mine, mine_url, verify=False).ok
    again = migrate_catalog(mine, mine_url)
    assert again.ok and again.verified and again.rows_copied == 0 and _version(mine_url) == "0012"
    with pytest.raises(CatalogError, match="run without --no-verify"):
        migrate_catalog(mine, mine_url, verify=False)


def test_the_schema_is_created_already_marked(source: str, postgres_url: str):
    """The schema had been committed unmarked, then marked in a transaction of its own: a move killed between
    them left an empty catalog like any other, which every command took (and a later resume refused)."""
    engine = create_catalog_engine(postgres_url)
    committed: list[str | None] = []

    @sa.event.listens_for(engine, "commit")
    def version_committed(conn: sa.Connection) -> None:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if cursor.execute("SELECT to_regclass('alembic_version')").fetchone()[0] is not None:
            committed.append(cursor.execute("SELECT max(version_num) FROM alembic_version").fetchone()[0])

    try:
        assert migrate_catalog(source, engine, batch_size=16).ok  # type: ignore[arg-type]
    finally:
        engine.dispose()
    # Every commit, from the schema's, until the copy was verified, left the target marked.
    assert committed[0] == "0012 migrating" and committed[-1] == "0012"
    assert set(committed[:-1]) == {"0012 migrating"}


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_a_resume_without_verification_refuses_a_source_written_to_since_the_move_began(
    source: str, postgres_url: str, batch_size: int
):
    """A source edited after its move was interrupted: with --no-verify, the resume had compared only its own
    last batch of rows (so, with a small --batch-size, none of the edited rows) and finished a mixed target."""

    class Interrupted(Exception):
        pass

    def interrupt(update: TransferProgress) -> None:
        if update.rows_done >= 50:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate_catalog(source, postgres_url, batch_size=1, verify=False, progress=interrupt)
    with Catalog.open(source) as catalog:  # one of the first images, long copied
        first = next(catalog.images())
        catalog.apply_edit(
            catalog.plan_edit(Selection(ids=(first.id,)), assign={"alt": 555.0}), reason="drift", author="ana"
        )
    with pytest.raises(CatalogError, match=f"{source} was written to since its move into .* began"):
        migrate_catalog(source, postgres_url, batch_size=batch_size, verify=False)
    assert _version(postgres_url) == "0012 migrating"


def test_looking_at_what_is_due_leaves_an_interrupted_move_resumable(postgres_url: str, tmp_path: Path):
    """`panopipe plan` and `run --estimate` on the source after a move was interrupted: they had recorded the
    candidates they found up to date (stitch, after a GPS edit), so the resume refused the source as written
    to since the move began, and the move had to start again from scratch."""
    path = str(tmp_path / "catalog.db")
    settings = Settings(
        project="demo",
        steps={
            "pipeline": {"output": str(tmp_path / "out")},
            "stitch": {"rig": RIG.to_dict(), "params": {"width": 128, "height": 64}},
            "derive": {"thumbnail": 32, "preview": 0},
        },
    )
    with Catalog.open(path) as catalog:
        add_rig_shots(catalog, tmp_path / "captures", 2)
        assert run(catalog, settings=settings, executor=InlineExecutor()).ok
        changes = catalog.plan_edit(Selection(shots=("R001-000001",)), assign={"lat": 47.0})
        catalog.apply_edit(changes, reason="GPS", author="ana")

    class Interrupted(Exception):
        pass

    def interrupt(update: TransferProgress) -> None:
        if update.rows_done >= 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate_catalog(path, postgres_url, batch_size=1, progress=interrupt)
    with Catalog.open(path) as catalog:
        assert plan(catalog, settings=settings).counts() == {
            "stitch": 0,  # a candidate (its frames were edited), found up to date
            "apply-metadata": 1,
            "derive": 1,
            "publish": 1,
        }
        assert estimate(catalog, settings=settings).jobs == 3
    report = migrate_catalog(path, postgres_url, batch_size=1)
    assert report.ok and report.resumed and _snapshot(postgres_url) == _snapshot(path)


def test_a_database_error_during_a_move_is_one_line(source: str, postgres_url: str):
    """A table locked by another session past the target's lock_timeout: SQLAlchemy's error, with the SQL,
    had reached the user as a traceback."""

    def interrupt(update: TransferProgress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate_catalog(source, postgres_url, batch_size=16, progress=interrupt)
    with closing(psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql"))) as locker:
        locker.execute("LOCK TABLE images IN ACCESS EXCLUSIVE MODE")
        impatient = postgres_url + "%20-clock_timeout%3D200"
        with pytest.raises(CatalogError) as error:
            migrate_catalog(source, impatient, batch_size=16)
    message = str(error.value)
    assert "lock timeout" in message and "\n" not in message and "SQL" not in message, message


def test_bad_arguments(source: str, tmp_path: Path):
    with pytest.raises(ConfigError, match="must be a postgresql"):
        migrate_catalog(source, str(tmp_path / "copy.db"))
    with pytest.raises(CatalogError, match="no catalog at"):
        migrate_catalog(str(tmp_path / "missing.db"), "postgresql://postgres@127.0.0.1/test")


def test_every_double_is_copied_bit_for_bit(source: str, postgres_url: str, reader: ReaderName):
    """Doubles of every kind (ties of the shortest decimal, huge, tiny, subnormal, infinite) and a change of
    one unit in the last place is caught."""
    rng = random.Random(3)
    values = [0.1, 1 / 3, 1e-5, 123456789012345.0, 1e15 + 0.125, -1.5e15, 2.0**53 + 2, 2.7933204325879152e16]
    values += [1.2345e20, 5e-324, 1.7976931348623157e308, math.inf, -math.inf, 48.137154 + 1e-15]
    randoms = (struct.unpack("<d", rng.randbytes(8))[0] for _ in range(200))
    values += [value for value in randoms if not math.isnan(value)][: 60 - len(values)]
    with sqlite3.connect(source) as db:
        ids = [row[0] for row in db.execute("SELECT id FROM images ORDER BY id")]
        db.executemany("UPDATE images SET heading = ? WHERE id = ?", zip(values, ids, strict=False))
    assert migrate_catalog(source, postgres_url, batch_size=16, reader=reader).ok
    with sqlite3.connect(source) as db:
        expected = db.execute("SELECT heading FROM images ORDER BY id").fetchall()
    engine = create_catalog_engine(postgres_url)
    with engine.connect() as conn:
        copied = conn.execute(sa.text("SELECT heading FROM images ORDER BY id")).all()
    assert [struct.pack(">d", x) for (x,) in copied] == [struct.pack(">d", x) for (x,) in expected]
    with engine.begin() as conn:
        nudged = math.nextafter(values[0], math.inf)
        conn.execute(sa.text("UPDATE images SET heading = :x WHERE id = :id"), {"x": nudged, "id": ids[0]})
    engine.dispose()
    checks = verify_transfer(source, postgres_url, reader=reader)
    assert [check.table for check in checks if not check.ok] == ["images"]


def test_a_nan_on_the_target_does_not_pass_for_a_null(source: str, postgres_url: str):
    """SQLite cannot store NaN, so the checksum digests a NULL double as NaN; a NaN on the target still differs."""
    assert migrate_catalog(source, postgres_url).ok
    engine = create_catalog_engine(postgres_url)
    with engine.begin() as conn:
        assert (
            conn.execute(
                sa.text("UPDATE images SET pitch = 'NaN' WHERE frame = 15 AND pitch IS NULL")
            ).rowcount
            == 1
        )
    engine.dispose()
    assert [check.table for check in verify_transfer(source, postgres_url) if not check.ok] == ["images"]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            "UPDATE images SET heading = 'north' WHERE frame = 4",
            "images holds a value that is not a number .*heading",
        ),
        (
            "UPDATE images SET captured_at = 'yesterday' WHERE frame = 4",
            "not a time in its column captured_at",
        ),
        (
            "UPDATE images SET captured_at = 1714557600 WHERE frame = 4",
            "not a time in its column captured_at",
        ),
        ("UPDATE images SET width = 2147483648 WHERE frame = 4", "not a 32-bit integer in its column width"),
        (  # a text PostgreSQL refuses, which SQLite (and panopipe before 2026-12-05) took
            "UPDATE images SET make = printf('%.300c', 'x') WHERE frame = 4",
            "images holds a text longer than 128 characters, the most its column make holds on PostgreSQL "
            r"\(the row of key '[0-9a-f]{32}'\): correct it in the SQLite catalog, then migrate again",
        ),
        ("UPDATE images SET size = 12.5 WHERE frame = 4", "not an integer in its column size"),
        ("UPDATE images SET deleted = 'no' WHERE frame = 4", "not a boolean in its column deleted"),
        (
            "UPDATE artifacts SET job_id = 'job-1' WHERE name = 't3'",
            "artifacts .* not a UUID in its column job_id",
        ),
        ("UPDATE images SET extra = X'7b7d' WHERE frame = 4", "not a JSON document in its column extra"),
    ],
)
def test_a_value_that_does_not_fit_its_column_is_named(
    source: str, postgres_url: str, update: str, message: str, reader: ReaderName
):
    with sqlite3.connect(source) as db:
        db.execute(update)
    with pytest.raises(CatalogError, match=message):
        migrate_catalog(source, postgres_url, reader=reader)


def _indexes_and_constraints(url: str) -> set[str]:
    engine = create_catalog_engine(url)
    with engine.connect() as conn:
        names = set(
            conn.execute(
                sa.text(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                    " UNION SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
                    " WHERE n.nspname = current_schema()"
                )
            ).scalars()
        )
    engine.dispose()
    return names


def test_indexes_dropped_for_the_copy_are_rebuilt_after_a_resume(
    source: str, postgres_url: str, postgres_database: str
):
    class Interrupted(Exception):
        pass

    def interrupt(update: TransferProgress) -> None:
        if update.rows_done == 32:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate_catalog(source, postgres_url, batch_size=16, progress=interrupt)
    # The tables copied from empty lost their secondary indexes (PostGIS's too, when there is one), unique and
    # foreign keys, all before the copy began; their primary keys stay.
    interrupted = _indexes_and_constraints(postgres_url)
    assert {"pk_images", "pk_edits", "pk_jobs"} <= interrupted
    assert not {"ix_images_lat_lon", "uq_images_uri", "ix_images_geom", "ix_jobs_status"} & interrupted
    assert not {"fk_edits_image_id_images", "uq_artifacts_step_subject_name"} & interrupted
    engine = create_catalog_engine(postgres_url)
    with engine.connect() as conn:
        mark = conn.execute(
            sa.text("SELECT obj_description(to_regclass('alembic_version'), 'pg_class')")
        ).scalar()
    engine.dispose()

    report = migrate_catalog(source, postgres_url, batch_size=16)
    assert report.ok and report.resumed
    # The same indexes and constraints, with the same names, as the migrations create.
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    fresh = f"{postgres_database}?options=-csearch_path%3D{schema}"
    engine = create_catalog_engine(fresh)
    upgrade(engine)
    engine.dispose()
    names = _indexes_and_constraints(postgres_url)
    assert names == _indexes_and_constraints(fresh)
    engine = create_catalog_engine(postgres_url)
    with engine.connect() as conn:
        note = conn.execute(sa.text("SELECT obj_description(to_regclass('images'), 'pg_class')")).scalar()
    engine.dispose()
    assert note is None  # the note listing the indexes to rebuild is gone
    assert {"ix_images_lat_lon", "uq_images_uri", "fk_edits_image_id_images", "ix_edits_batch"} <= names

    # Whatever is missing at the end of a run is built, even when there is nothing left to copy: a run stopped
    # while building them leaves its target marked.
    engine = create_catalog_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0012 migrating'"))
        conn.execute(sa.text(f"COMMENT ON TABLE alembic_version IS '{mark}'"))
        conn.execute(sa.text("DROP INDEX ix_images_shot"))
        conn.execute(sa.text("ALTER TABLE artifacts DROP CONSTRAINT uq_artifacts_step_subject_name"))
        # A run stopped after building a unique key's index, before making it the key.
        conn.execute(sa.text("ALTER TABLE jobs DROP CONSTRAINT uq_jobs_step_subject_fingerprint"))
        conn.execute(
            sa.text(
                "CREATE UNIQUE INDEX uq_jobs_step_subject_fingerprint ON jobs (step, subject, fingerprint)"
            )
        )
    again = migrate_catalog(source, postgres_url)
    assert again.ok and again.rows_copied == 0
    assert _indexes_and_constraints(postgres_url) == names
    with engine.connect() as conn:
        unique_keys = conn.execute(sa.text("SELECT conname FROM pg_constraint WHERE contype = 'u'")).scalars()
        assert {"uq_jobs_step_subject_fingerprint", "uq_artifacts_step_subject_name", "uq_images_uri"} <= set(
            unique_keys
        )
    engine.dispose()


def test_awkward_values_are_copied_exactly(source: str, postgres_url: str, reader: ReaderName):
    """Text with COPY's and the checksum's special characters, timestamps and JSON numbers in other forms."""
    awkward = [
        "tab\there",
        "new\nline\r",
        "bell\b form\f vtab\v",
        "back\\slash \\N",
        "\\N",
        "None",
        "unit\x1fseparator",
        "",
        "12:x",
    ]
    with sqlite3.connect(source) as db:
        for n, text in enumerate(awkward):
            db.execute(
                "UPDATE images SET make = ?, model = ?, shot = ? WHERE frame = ?", (text, text, text, 10 + n)
            )
        # Written by another tool: ISO 8601 with a T and an offset (kept as naive, like SQLAlchemy reads it),
        # and JSON numbers that SQLite's NUMERIC affinity stores as REAL and INTEGER.
        db.execute("UPDATE images SET modified_at = '2024-05-01T10:00:00+02:00' WHERE frame = 30")
        db.execute("UPDATE images SET extra = 0.30000000000000004 WHERE frame = 31")
        db.execute("UPDATE images SET extra = 7 WHERE frame = 32")
        # JSON written by hand: keys out of order, no spaces, an exponent, a trailing zero.
        db.execute("""UPDATE images SET extra = '{"b":1E2,"a":[1.50,"x"]}' WHERE frame = 33""")
    report = migrate_catalog(source, postgres_url, batch_size=7, reader=reader)
    assert report.ok, report.mismatches
    assert report.reader == reader and (report.note is None) == (reader == "compiled")
    assert _snapshot(postgres_url) == _snapshot(source)
    with Catalog.open(postgres_url, create=False) as target:
        copied = {image.frame: image for image in target.images(Selection(include_deleted=True))}
    assert copied[31].extra == 0.30000000000000004 and copied[32].extra == 7
    assert copied[33].extra == {"a": [1.5, "x"], "b": 100}
    assert copied[30].modified_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert [copied[10 + n].model for n in range(len(awkward))] == awkward
    engine = create_catalog_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE images SET make = 'unit', model = 'separator' WHERE frame = 15"))
    engine.dispose()
    checks = verify_transfer(source, postgres_url, reader=reader)
    assert {check.table for check in checks if not check.ok} == {"images"}


def test_copy_out_streams_rows_and_raises_the_servers_error(postgres_url: str):
    """The libpq loop that reads the target back: every row, the row count, and an error mid-stream or at the
    start raised as psycopg raises it, leaving the connection usable."""
    engine = create_catalog_engine(postgres_url)
    rows: list[bytes] = []
    with reading(engine) as pg:
        assert (
            _copy_out(
                pg, "COPY (SELECT generate_series(1, 3)) TO STDOUT", lambda row: rows.append(bytes(row))
            )
            == 3
        )
    assert rows == [b"1\n", b"2\n", b"3\n"]
    for statement, error in [
        ("COPY (SELECT 1 / (3000 - generate_series(1, 5000))) TO STDOUT", psycopg.errors.DivisionByZero),
        ("COPY (SELECT * FROM no_such_table) TO STDOUT", psycopg.errors.UndefinedTable),
    ]:
        with reading(engine) as pg:
            with pytest.raises(error):
                _copy_out(pg, statement, rows.append)
            pg.rollback()
            assert pg.execute("SELECT 1").fetchone() == (1,)
    engine.dispose()


def test_both_readers_write_the_same_bytes(source: str):
    """The pure-Python reader writes what the compiled one writes: COPY data, canonical digests, key and JSON
    texts, for every kind of value, including those SQLite stores in another type than the column's."""
    require(default_reader() == "compiled", "the compiled SQLite reader (install panopipe with a C compiler)")
    with sqlite3.connect(source) as db:
        for frame, update in enumerate(
            [
                "make = 12.5, model = 7, shot = X'00ff41', reel = 0.1",  # text columns holding other types
                "make = 1e300, model = -0.0, shot = 123456789012345678",
                "heading = 3, pitch = 9007199254740993, roll = -0.0, alt = 5e-324",  # integers as doubles
                "captured_at = '2024-02-29 23:59:59.999999', modified_at = '0001-01-01 00:00:00'",
                "captured_at = '2024-05-01T10:00:00+02:00', modified_at = '2024-05-01 10:00:00Z'",  # through the hook
                "captured_at = '2024-05-01 10:00:00.5', modified_at = '9999-12-31 23:59:59'",
                "extra = 0.30000000000000004, captured = 7",  # JSON numbers stored as numbers
                'extra = \'{"b":1E2,"a":[1.50,"é\\u00e9"]}\', captured = \'null\'',
                "deleted = 7, size = -9223372036854775808, width = -2147483648, height = 2147483647",
                "make = 'tab\there\x1f' || char(30) || char(0) || 'x', error = ''",
            ]
        ):
            db.execute(f"UPDATE images SET {update} WHERE frame = {10 + frame}")
        db.execute("UPDATE images SET id = upper(id) WHERE frame = 30")
        db.execute("UPDATE artifacts SET job_id = upper(job_id) WHERE name = 't4'")
    engine = create_catalog_engine(source)
    batches: dict[str, list[object]] = {}
    for name in ("compiled", "python"):
        with Source(engine, name) as reading:
            batches[name] = [
                (table.name, size, batch)
                for table in TABLES
                for size in (1, 7, 1000)
                for batch in reading.table(table).batches(None, None, size, copy_data=True)
            ]
            assert reading.table(TABLES[0]).batch("ffffffff", None, 10) is None
    engine.dispose()
    with sqlite3.connect(source) as db:
        rows = [db.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0] for table in TABLES]
    assert len(batches["compiled"]) == sum(math.ceil(n / size) for n in rows for size in (1, 7, 1000))
    assert batches["python"] == batches["compiled"]


def test_both_readers_agree_on_every_kind_of_column_and_every_stored_type(tmp_path: Path):
    """Each letter of the readers' kinds against values of each type SQLite can hand over: the same result,
    or the same error (BadValue with the same column, expectation and value, or the hook's own)."""
    require(default_reader() == "compiled", "the compiled SQLite reader (install panopipe with a C compiler)")
    values = [None, 0, 1, -1, 2**31 - 1, 2**31, -(2**63), 12.5, -0.0, 1e300, 5e-324, math.inf, 0.1 + 0.2]
    values += [
        "",
        "text",
        "é\x1f\x1e",
        "12",
        "2024-02-29 10:00:00",
        "2023-02-29 10:00:00",
        "2024-05-01T10:00:00Z",
    ]
    values += ["2024-05-01 10:00:00.123456", "2024-05-01 24:00:00", "0123456789abcdef0123456789ABCDEF"]
    values += ["01234567-89ab-cdef-0123-456789abcdef", "0123456789abcdef0123456789abcde", '{"a": [1.50]}']
    values += [b"", b"\x00\xff", b'{"a": 1}', b"2024-05-01 10:00:00"]
    path = str(tmp_path / "values.db")
    with closing(sqlite3.connect(path)) as db, db:  # a column without affinity keeps each value's type
        db.execute("CREATE TABLE v (n INTEGER PRIMARY KEY, x)")
        db.executemany("INSERT INTO v VALUES (?, ?)", enumerate(values))
    readers = {name: _reader_module(name).Reader(path) for name in ("compiled", "python")}
    outcomes: dict[str, list[object]] = {name: [] for name in readers}
    for name, reader in readers.items():
        for kind in "utiIbdTjx":
            for key_kind, key in (("t", "k"), ("I", 7)):
                for n, value in enumerate(values):
                    try:
                        found: object = reader.batch(
                            "SELECT ?, x, x FROM v WHERE n = ?",
                            [key, n],
                            key_kind + kind + "j",
                            time_micros,
                            json_number_text,
                        )
                    except ValueError as error:
                        found = (type(error).__name__, error.args)
                    outcomes[name].append((kind, key, value, found))
        reader.close()
    assert outcomes["python"] == outcomes["compiled"]
    kinds = {outcome[3][0] for outcome in outcomes["python"] if isinstance(outcome[3][0], str)}
    assert kinds == {"BadValue"}  # some values are refused...
    assert sum(isinstance(outcome[3][0], int) for outcome in outcomes["python"]) > 100  # ...many are read
