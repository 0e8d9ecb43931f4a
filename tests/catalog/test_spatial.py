"""Spatial selections: PostGIS's ``images.geom`` and GiST index where available, lat/lon ranges elsewhere, same results."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pyproj
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from tests.conftest import POSTGRES_ADMIN_URL, require

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.catalog.engine import alembic_config, upgrade
from panopipe.catalog.schema import images
from panopipe.catalog.spatial import GEOM_INDEX, PostGIS
from panopipe.geo import EARTH_RADIUS_M, destination

CENTER = (48.0, 11.0)
BOX = (10.99, 47.99, 11.01, 48.01)
RADII = (500.0, 1000.0, 2500.0)


def _records() -> list[ImageRecord]:
    """Random points around CENTER, and points on and just off the edges of BOX and of the circles."""
    rng = random.Random(7)
    points = [
        CENTER,
        *((48.0 + rng.uniform(-0.05, 0.05), 11.0 + rng.uniform(-0.05, 0.05)) for _ in range(3000)),
    ]
    min_lon, min_lat, max_lon, max_lat = BOX
    for off in (0.0, 1e-7, -1e-7):  # PostGIS's && compares single-precision boxes: 1e-7 degrees passes it
        points += [(48.0, max_lon + off), (48.0, min_lon - off), (max_lat + off, 11.0), (min_lat - off, 11.0)]
    for radius in RADII:
        for bearing in range(0, 360, 15):
            points += [destination(*CENTER, bearing, radius + d) for d in (-0.01, -0.001, 0.001, 0.01)]
    records = [
        ImageRecord(uri=_uri(n), lat=lat, lon=lon, reel=f"R00{n % 3}", frame=n)
        for n, (lat, lon) in enumerate(points)
    ]
    return [*records, ImageRecord(uri="/survey/R000/nowhere.jpg", reel="R000", frame=-1)]


def _uri(n: int) -> str:
    return f"/survey/R00{n % 3}/{n:06d}.jpg"


SELECTIONS = [
    Selection(bbox=BOX),
    Selection(bbox=BOX, reels=("R001",)),
    Selection(bbox=(11.0, 48.0, 11.0, 48.0)),
    *(Selection(near=CENTER, radius_m=radius) for radius in RADII),
    Selection(near=CENTER, radius_m=2500.0, bbox=BOX),
    Selection(near=(47.97, 10.97), radius_m=1000.0, reels=("R000", "R002")),
    Selection(include_deleted=True, near=CENTER, radius_m=1000.0),
]


def _fill(catalog: Catalog) -> Catalog:
    catalog.upsert_images(_records())
    catalog.mark_deleted([_uri(1), _uri(3001)])  # a random point and one on the edge of BOX
    return catalog


@pytest.fixture
def postgis_catalog(postgres_url: str) -> Iterator[Catalog]:
    """A PostgreSQL catalog with PostGIS's ``images.geom``."""
    with Catalog.open(postgres_url) as catalog:
        require(catalog.postgis is not None, "PostGIS (apt-get install postgresql-15-postgis-3)")
        yield catalog


@contextmanager
def _database(owner: str | None = None) -> Iterator[str]:
    """A new database (owned by a new role without privileges when ``owner`` is given), dropped afterwards."""
    name = f"panopipe_spatial_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        if owner:
            conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name)
    if owner:
        url = url.set(username=owner, password=None)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if owner:
                conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def _results(catalog: Catalog) -> list[tuple[list[str], int]]:
    return [([image.uri for image in catalog.images(s)], catalog.count(s)) for s in SELECTIONS]


def test_postgis_selects_exactly_what_sqlite_selects(postgis_catalog: Catalog, tmp_path):
    # The final decision is the same on both backends: exact lat/lon ranges for --bbox, haversine for --near
    # (Selection.matches); PostGIS's && and ST_DWithin only find candidates. So even points a millimetre
    # from a circle, or 1e-7 degrees off a box edge, land on the same side.
    with Catalog.open(tmp_path / "catalog.db") as sqlite:
        assert sqlite.postgis is None
        expected = _results(_fill(sqlite))
    assert _results(_fill(postgis_catalog)) == expected
    assert all(count for _, count in expected)


@pytest.mark.parametrize(
    "selection",
    [Selection(bbox=(11.0, 48.0, 11.002, 48.002)), Selection(near=CENTER, radius_m=100.0)],
    ids=["bbox", "near"],
)
def test_spatial_queries_use_the_gist_index(postgis_catalog: Catalog, selection: Selection):
    _fill(postgis_catalog)
    query = sa.select(images.c.id).where(*selection.where(postgis_catalog.postgis))
    sql = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    with postgis_catalog.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE images"))
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {sql}")).scalars())
    assert GEOM_INDEX in plan, plan


def _postgis_available() -> bool:
    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone())


def _geom_and_index(catalog: Catalog) -> tuple[bool, bool]:
    with catalog.engine.connect() as conn:
        geom, index = conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('images')"
                " AND attname = 'geom' AND NOT attisdropped), to_regclass(:index) IS NOT NULL"
            ),
            {"index": GEOM_INDEX},
        ).one()
    return geom, index


def test_a_plain_database_url_gets_postgis_in_a_schema_of_its_own_and_downgrade_removes_it():
    require(_postgis_available(), "PostGIS (apt-get install postgresql-15-postgis-3)")
    with _database() as url, Catalog.open(url) as catalog:
        assert catalog.postgis == PostGIS("postgis")
        assert _geom_and_index(catalog) == (True, True)
        with catalog.engine.connect() as conn:  # PostGIS's spatial_ref_sys is not among the catalog's tables
            assert "spatial_ref_sys" not in sa.inspect(conn).get_table_names()
        with catalog.engine.connect() as conn, conn.begin():
            command.downgrade(alembic_config(conn), "0003")
        assert _geom_and_index(catalog) == (False, False)
        upgrade(catalog.engine)
        assert _geom_and_index(catalog) == (True, True)
        _fill(catalog)
        assert catalog.count(Selection(near=CENTER, radius_m=1000.0)) > 0


def test_without_the_privilege_to_create_postgis_the_catalog_uses_lat_lon_ranges(tmp_path):
    with _database(owner=f"panopipe_user_{uuid.uuid4().hex[:8]}") as url, Catalog.open(url) as catalog:
        assert catalog.postgis is None
        assert _geom_and_index(catalog) == (False, False)
        with Catalog.open(tmp_path / "catalog.db") as sqlite:
            assert _results(_fill(catalog)) == _results(_fill(sqlite))


def test_a_database_with_postgis_in_public_takes_a_new_catalog():
    require(_postgis_available(), "PostGIS (apt-get install postgresql-15-postgis-3)")
    name = f"panopipe_postgis_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis SCHEMA public")  # as many RDS databases have it
        with Catalog.open(url) as catalog:
            assert catalog.count() == 0 and catalog.postgis is not None
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


WRAPPING = [((-17.0, 180.0), 100.0), ((-17.0, -179.9995), 300.0), ((89.9999, 45.0), 50.0), ((-89.99, 0), 2e3)]
"""Circles across the antimeridian, and holding a pole (or nearly: 1112 m from the south pole)."""


def _wrapping_records() -> list[ImageRecord]:
    """Around each centre of WRAPPING, points at random bearings up to twice its radius away."""
    rng = random.Random(11)
    points = [
        destination(*centre, rng.uniform(0, 360), rng.uniform(0, 2 * radius))
        for centre, radius in WRAPPING
        for _ in range(400)
    ]
    return [
        ImageRecord(uri=_uri(n), lat=lat, lon=lon, reel="R000", frame=n)
        for n, (lat, lon) in enumerate(points)
    ]


def test_near_and_bbox_select_across_the_antimeridian_and_around_the_poles(catalog: Catalog):
    """What a circle selects is every point within its radius on the sphere, as pyproj measures it."""
    catalog.upsert_images(_wrapping_records())
    points = [(image.uri, image.lat, image.lon) for image in catalog.images(limit=None)]
    sphere = pyproj.Geod(a=EARTH_RADIUS_M, b=EARTH_RADIUS_M)
    for (lat, lon), radius in WRAPPING:
        distances = {uri: sphere.inv(lon, lat, x, y)[2] for uri, y, x in points}
        selected = {
            image.uri for image in catalog.images(Selection(near=(lat, lon), radius_m=radius), limit=None)
        }
        assert selected == {uri for uri, metres in distances.items() if metres <= radius}, (lat, lon)
        assert len(selected) > 50
    across = Selection(bbox=(179.9995, -17.01, -179.9995, -16.99))  # GeoJSON's way across 180 degrees
    expected = {uri for uri, lat, lon in points if -17.01 <= lat <= -16.99 and abs(lon) >= 179.9995}
    assert {image.uri for image in catalog.images(across, limit=None)} == expected and len(expected) > 100
