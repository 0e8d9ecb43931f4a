"""Benchmark: ``migrate_catalog`` (SQLite -> PostgreSQL) against pgloader on the same catalog file.

Builds a synthetic catalog (default 1,000,000 images, 5 % as many edits, 20 % as many artifacts) and moves it
into a fresh local database per run, interleaved (``bench/fair.py``): panopipe with and without verification,
and pgloader. Both tools move the same rows of the same tables: the edits table's JSON columns hold numbers
(SQLite gives a column declared JSON numeric affinity, so ``12.5`` is stored as a REAL), which pgloader by
default prints as Lisp floats (``12.5d0``) that PostgreSQL rejects, skipping the table; the load file here
casts them with pgloader's own ``float-to-string``, and the rows each tool copied are counted. pgloader
reads a copy of the catalog without its expression indexes, which it cannot read (it stops with a type
error), so it builds one index fewer than panopipe per expression index. Reported:
rows/s, the CPU seconds each tool and the PostgreSQL server spent (which the load of other jobs on the
machine does not inflate as it does wall time; but the server's figure counts every backend of the server,
so other users of the same server add to it), and whether each copy kept latitudes bit-identical. Each run
starts after a ``sync`` and a ``CHECKPOINT``. Linux only (/proc). Not a test; run it by hand:

    python bench/bench_migrate.py [--quick] [--images 1000000] [--runs 7] [--json out.json]
    python bench/bench_migrate.py --catalog catalog.db --keep   # reuse a catalog built by an earlier --keep run
    python bench/bench_migrate.py --catalog catalog.db --reader python   # the pure-Python SQLite reader
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

import fair
from panopipe.catalog import Catalog
from panopipe.catalog.transfer import migrate_catalog
from panopipe.catalog.types import new_id

T0 = datetime(2024, 5, 1, 8, 0, 0)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # how SQLAlchemy stores a DateTime in SQLite


def build_catalog(path: Path, images: int, edits: int, artifacts: int) -> int:
    """A catalog of that many rows, written with raw executemany into the schema Catalog.open creates."""
    Catalog.open(path).close()
    rng = random.Random(7)
    ids = [new_id().replace("-", "") for _ in range(images)]
    now = _stamp(datetime.now(UTC).replace(tzinfo=None))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA synchronous=OFF")
        rows = (
            (
                ids[n],
                f"s3://survey/R{n // 10000:03d}/cam{n % 4}/frame_{n:07d}.jpg",
                2_000_000 + n,
                f"{rng.getrandbits(256):064x}",
                _stamp(T0 + timedelta(seconds=n * 0.25)),
                120,
                47.0 + rng.random(),
                11.0 + rng.random(),
                500.0 + rng.random() * 50,
                rng.random() * 360,
                "Acme",
                "Rig-4",
                n % 4,
                8192,
                4096,
                "equirectangular",
                f"R{n // 10000:03d}",
                n // 4,
                json.dumps({"gps_fix": 3, "hdop": round(rng.random(), 3)}) if n % 10 == 0 else None,
                now,
            )
            for n in range(images)
        )
        db.executemany(
            "INSERT INTO images (id, uri, size, content_hash, captured_at, utc_offset_minutes, lat, lon, alt,"
            " heading, make, model, camera_index, width, height, projection, reel, frame, extra, status,"
            f" deleted, ingested_at, updated_at) VALUES ({', '.join('?' * 19)}, 'ok', 0, ?20, ?20)",
            rows,
        )
        batch = new_id().replace("-", "")
        db.executemany(
            "INSERT INTO edits (batch, image_id, field, old_value, new_value, author, reason, created_at)"
            " VALUES (?, ?, 'alt', ?, ?, 'bench', 'survey GPS fix', ?)",
            (
                (batch, ids[n * 7 % images], json.dumps(500.0 + n / 3), json.dumps(12.5), now)
                for n in range(edits)
            ),
        )
        db.executemany(
            "INSERT INTO artifacts (step, subject, name, image_id, step_version, params_hash, fingerprint,"
            " output_uri, output_size, orphaned, created_at) VALUES ('thumb', ?, ?, ?, '1', ?, ?, ?, ?, 0, ?)",
            (
                (
                    ids[n % images],
                    f"t{n}",
                    ids[n % images],
                    "p" * 64,
                    f"{n:064x}",
                    f"s3://out/{n}.jpg",
                    n,
                    now,
                )
                for n in range(artifacts)
            ),
        )
    return images + edits + artifacts


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def without_expression_indexes(source: Path, workdir: Path) -> tuple[Path, list[str]]:
    """A copy of the catalog at ``source`` without its expression indexes, and their names: pgloader 3.6 stops
    on an index of an expression ("The value NIL is not of type PGLOADER.CATALOG:COLUMN"). Made once, out of
    the clock; pgloader then builds every other index, one fewer than panopipe."""
    copy = workdir / "catalog-for-pgloader.db"
    with sqlite3.connect(source) as db:
        indexes = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            if any(column is None for *_, column in db.execute(f"PRAGMA index_info('{name}')"))
        ]
    if not copy.is_file():
        shutil.copyfile(source, copy)
        with sqlite3.connect(copy) as db:
            for name in indexes:
                db.execute(f'DROP INDEX "{name}"')
    return copy, indexes


def pgloader_command(pgloader: str, source: Path, target_url: str, workdir: Path) -> list[str]:
    """pgloader with a load file that casts SQLite's JSON columns' floats to text PostgreSQL accepts."""
    load = workdir / "catalog.load"
    load.write_text(
        f"LOAD DATABASE FROM sqlite://{source.resolve()} INTO {target_url}\n"
        " CAST type json to json drop typemod using float-to-string;\n"
    )
    # Its default 1 GB heap is exhausted by a million-image catalog ("Heap exhausted, game over").
    return [pgloader, "--dynamic-space-size", "4096", "--quiet", str(load)]


@dataclass
class Measured:
    """Wall time, the client's CPU time (panopipe's process or pgloader's) and the PostgreSQL server's."""

    wall: float
    client_cpu: float
    server_cpu: float


def server_cpu(admin_url: str) -> float:
    """CPU seconds the local PostgreSQL server has used: its live processes plus the backends its postmaster
    has reaped (Linux /proc). A share of the machine that the load of other jobs does not inflate."""
    with psycopg.connect(admin_url) as conn:
        postmaster = fair.process_stat(conn.execute("SELECT pg_backend_pid()").fetchone()[0])[1][1]
    total = sum(fair.process_stat(postmaster)[1][11:15])  # own and reaped children's user and system time
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = fair.process_stat(pid)[1]
        except OSError:
            continue  # exited meanwhile
        if fields[1] == postmaster:
            total += fields[11] + fields[12]
    return total / fair.TICKS


def measure(action, admin_url: str) -> Measured:
    """Run ``action``; CPU of this process and its children (pgloader) counts as the client's."""

    def client() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    # Each run starts from the same state: no dirty pages of an earlier run (the built catalog's, the server's)
    # left to be written while it runs.
    os.sync()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    server, cpu, started = server_cpu(admin_url), client(), time.perf_counter()
    action()
    wall = time.perf_counter() - started
    time.sleep(0.5)  # let the postmaster reap the backends that just closed
    return Measured(wall, client() - cpu, server_cpu(admin_url) - server)


def exactness(source: Path, target_url: str, table_schema: str) -> tuple[str, int, int]:
    """The target's type of ``images.lat`` and how many of 1000 sampled latitudes are bit-identical."""
    with sqlite3.connect(source) as db:
        sample = dict(db.execute("SELECT uri, lat FROM images ORDER BY random() LIMIT 1000").fetchall())
    with psycopg.connect(target_url) as conn:
        kind = conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'images' AND column_name = 'lat'",
            (table_schema,),
        ).fetchone()
        copied = dict(
            conn.execute(
                f"SELECT uri, lat FROM {table_schema}.images WHERE uri = ANY(%s)", (list(sample),)
            ).fetchall()
        )
    same = sum(
        copied.get(uri) is not None and struct.pack("<d", float(copied[uri])) == struct.pack("<d", lat)
        for uri, lat in sample.items()
    )
    return (kind[0] if kind else "?"), same, len(sample)


def copied_rows(url: str) -> int:
    """Rows in the catalog tables at ``url`` (pgloader skips a table whose COPY fails, and says so only in its log)."""
    with psycopg.connect(url) as conn:
        return sum(
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("images", "jobs", "edits", "artifacts")
        )


def source_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return sum(
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("images", "edits", "artifacts")
        )


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
        parser.add_argument("--batch-size", type=int, help="panopipe's batch size (default: its own)")
        parser.add_argument("--keep", action="store_true", help="keep the SQLite file and the last databases")
        parser.add_argument(
            "--catalog", type=Path, help="an existing catalog to move instead of building one"
        )
        parser.add_argument(
            "--reader",
            choices=("compiled", "python"),
            help="how to read SQLite (default: compiled if installed)",
        )

    args = fair.parse_args(__doc__, {"images": (1_000_000, 20_000)}, extra=options)
    workdir = Path(tempfile.mkdtemp(prefix="bench_migrate_"))
    path = args.catalog or workdir / "catalog.db"
    with fair.report(args, "migrate") as report:
        if args.catalog:
            rows = source_rows(path)
            report.note(f"using {path}: {rows:,} rows")
        else:
            started = time.perf_counter()
            rows = build_catalog(path, args.images, args.images // 20, args.images // 5)
            report.note(
                f"built {path} ({path.stat().st_size / 1e6:.0f} MB): {args.images:,} images, {rows:,} rows "
                f"in {time.perf_counter() - started:.1f} s"
            )
        batch = {"batch_size": args.batch_size} if args.batch_size else {}
        pgloader = shutil.which("pgloader")
        measured: dict[str, list[Measured]] = {}
        copied: dict[str, set[int]] = {}
        exact: dict[str, str] = {}

        def side(kind: str, move) -> fair.Side:
            """A run of ``move(url)`` into a new database; wall time returned, CPU, rows and exactness kept."""

            def run() -> float:
                name = f"bench_migrate_{kind}_{os.getpid()}"
                url = fresh_database(args.admin_url, name)
                m = measure(lambda: move(url), args.admin_url)
                measured.setdefault(kind, []).append(m)
                copied.setdefault(kind, set()).add(copied_rows(url))
                if kind not in exact:
                    lat, same, total = exactness(path, url, "public")
                    exact[kind] = f"lat is {lat}, {same}/{total} sampled latitudes bit-identical"
                if not args.keep:
                    drop_database(args.admin_url, name)
                return m.wall

            return run

        def panopipe(verify: bool):
            def move(url: str) -> None:
                moved = migrate_catalog(str(path), url, verify=verify, reader=args.reader, **batch)
                assert moved.ok or not verify, moved.mismatches

            return move

        sides = {
            "panopipe migrate, verified": side("verified", panopipe(True)),
            "panopipe migrate, no verification": side("unverified", panopipe(False)),
        }
        if pgloader:
            loaded, dropped = without_expression_indexes(path, workdir)
            if dropped:
                report.note(
                    f"pgloader reads a copy without the expression index(es) it cannot read: {', '.join(dropped)}"
                )

            def load(url: str) -> None:
                command = pgloader_command(pgloader, loaded, url, workdir)
                subprocess.run(command, check=True, capture_output=True)

            sides["pgloader (JSON floats cast)"] = side("pgloader", load)
        else:
            report.unavailable("pgloader", "not installed: apt-get install -y pgloader")
        comparison = report.compare(
            sides, title=f"migrate SQLite -> PostgreSQL, {rows:,} rows", unit="rows", count=rows
        )
        timed = {kind: runs[args.warmup :] for kind, runs in measured.items()}  # the warm-up runs left out
        for kind, runs in timed.items():
            client = statistics.median(m.client_cpu for m in runs)
            server = statistics.median(m.server_cpu for m in runs)
            comparison.notes.append(
                f"{kind}: median CPU {client:.1f} s client + {server:.1f} s PostgreSQL"
                f" ({rows / (client + server):,.0f} rows per CPU s); rows copied {sorted(copied[kind])}"
                f" of {rows:,}; {exact[kind]}"
            )
        for kind in ("verified", "unverified"):
            if "pgloader" in timed:
                cpu = statistics.median(
                    (theirs.client_cpu + theirs.server_cpu) / (ours.client_cpu + ours.server_cpu)
                    for ours, theirs in zip(timed[kind], timed["pgloader"], strict=True)
                )
                comparison.notes.append(
                    f"pgloader CPU / panopipe {kind} CPU, median of the rounds: {cpu:.2f}x"
                )
        for note in comparison.notes:
            print(f"note: {note}")
        if not args.keep:
            shutil.rmtree(workdir)  # a --catalog given is not in it


if __name__ == "__main__":
    main()
