"""Benchmark: ``migrate_catalog`` (SQLite -> PostgreSQL) against pgloader on the same catalog file.

Builds a synthetic catalog (default 1,000,000 images, 5 % as many edits, 20 % as many artifacts), migrates it
into fresh local databases with and without verification, runs pgloader on the same file, and reports rows/s,
the CPU seconds each tool and the PostgreSQL server spent (which the load of other jobs on the machine does not
inflate as it does wall time), and whether each copy kept latitudes bit-identical. Linux only (/proc). Not a
test; run it by hand:

    python bench/bench_migrate.py --images 100000
    python bench/bench_migrate.py --catalog catalog.db --keep   # reuse a catalog built by an earlier --keep run
    python bench/bench_migrate.py --catalog catalog.db --reader python   # the pure-Python SQLite reader
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from panopipe.catalog import Catalog
from panopipe.catalog.transfer import DEFAULT_BATCH_SIZE, migrate_catalog
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
        postmaster = _stat(conn.execute("SELECT pg_backend_pid()").fetchone()[0])[1]
    total = sum(_stat(postmaster)[11:15])  # own and reaped children's user and system time
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = _stat(int(pid))
        except OSError:
            continue  # exited meanwhile
        if fields[1] == postmaster:
            total += fields[11] + fields[12]
    return total / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[int]:
    """The numeric fields of /proc/PID/stat after the command name (index 1 is the parent's pid)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return [
        int(field) if field.lstrip("-").isdigit() else 0 for field in text[text.rindex(")") + 2 :].split()
    ]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--keep", action="store_true", help="keep the databases and the SQLite file")
    parser.add_argument("--catalog", type=Path, help="an existing catalog to move instead of building one")
    parser.add_argument(
        "--reader", choices=("compiled", "python"), help="how to read SQLite (default: compiled if installed)"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_migrate_"))
    path = workdir / "catalog.db"
    if args.catalog:
        path = args.catalog
        with sqlite3.connect(path) as db:
            rows = sum(
                db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("images", "edits", "artifacts")
            )
        print(f"using {path}: {rows:,} rows")
    else:
        started = time.perf_counter()
        rows = build_catalog(path, args.images, args.images // 20, args.images // 5)
        print(
            f"built {path} ({path.stat().st_size / 1e6:.0f} MB): {args.images:,} images, {rows:,} rows "
            f"in {time.perf_counter() - started:.1f} s"
        )

    names = {kind: f"bench_migrate_{kind}" for kind in ("verified", "unverified", "pgloader")}
    urls = {kind: fresh_database(args.admin_url, name) for kind, name in names.items()}
    results: dict[str, Measured] = {}
    reports = {}

    def panopipe(kind: str, verify: bool) -> None:
        reports[kind] = migrate_catalog(
            str(path), urls[kind], batch_size=args.batch_size, verify=verify, reader=args.reader
        )

    results["panopipe, verified"] = measure(lambda: panopipe("verified", True), args.admin_url)
    results["panopipe, no verification"] = measure(lambda: panopipe("unverified", False), args.admin_url)
    assert reports["verified"].ok, reports["verified"].mismatches
    pgloader = shutil.which("pgloader")
    loaded = {tool: rows for tool in results}
    if pgloader:
        # Its default 1 GB heap is exhausted by this catalog ("Heap exhausted, game over").
        command = [pgloader, "--dynamic-space-size", "4096", "--quiet", f"sqlite:///{path}", urls["pgloader"]]
        results["pgloader"] = measure(
            lambda: subprocess.run(command, check=True, capture_output=True), args.admin_url
        )
        loaded["pgloader"] = copied_rows(urls["pgloader"])

    print(
        f"\n{'tool':<28}{'seconds':>9}{'rows copied':>13}{'rows/s':>10}"
        f"{'client CPU s':>14}{'server CPU s':>14}{'rows per CPU s':>16}"
    )
    for tool, m in results.items():
        cpu = m.client_cpu + m.server_cpu
        print(
            f"{tool:<28}{m.wall:>9.1f}{loaded[tool]:>13,}{loaded[tool] / m.wall:>10,.0f}"
            f"{m.client_cpu:>14.1f}{m.server_cpu:>14.1f}{loaded[tool] / cpu:>16,.0f}"
        )
    if "pgloader" in results:
        theirs = results["pgloader"]
        for tool in ("panopipe, verified", "panopipe, no verification"):
            ours = results[tool]
            by_wall = rows / ours.wall / (loaded["pgloader"] / theirs.wall)
            by_cpu = (
                rows
                / (ours.client_cpu + ours.server_cpu)
                / (loaded["pgloader"] / (theirs.client_cpu + theirs.server_cpu))
            )
            print(
                f"{tool}: {by_wall:.2f}x pgloader's rows/s, {by_cpu:.2f}x its rows per CPU second (goal: 2x, verified)"
            )

    print("\nexactness (images.lat type on the target; bit-identical latitudes among 1000 sampled):")
    checks = {"panopipe": (urls["verified"], "public")}
    if pgloader:
        checks["pgloader"] = (urls["pgloader"], "public")
    for tool, (url, schema) in checks.items():
        kind, same, total = exactness(path, url, schema)
        print(f"  {tool:<10} lat is {kind}: {same}/{total} identical")
    if pgloader:
        with psycopg.connect(urls["pgloader"]) as conn:
            types = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = 'images'"
                " AND column_name IN ('id', 'lat', 'captured_at', 'extra', 'deleted') ORDER BY column_name"
            ).fetchall()
        print("  pgloader column types:", ", ".join(f"{name} {kind}" for name, kind in types))

    if not args.keep:
        for name in names.values():
            drop_database(args.admin_url, name)
        shutil.rmtree(workdir)  # a --catalog given is not in it


if __name__ == "__main__":
    main()
