"""``export -o X.gpkg`` into a GeoPackage already there replaces only its own layer: the file's other layers and
tables (a user's layer, QGIS's ``layer_styles`` and a project stored in the file) are kept, read back by GDAL
(pyogrio) and SQLite; a failed export leaves the file as it was, and a file that is no GeoPackage is refused."""

from __future__ import annotations

import sqlite3
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.errors
import pyogrio.raw
import pytest
from tests.conftest import locked

from panopipe.catalog import Catalog, ImageRecord
from panopipe.cli import main

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def add_images(catalog: str, folder: Path, frames: range) -> None:
    with Catalog.open(catalog) as opened:
        opened.upsert_images(
            [
                ImageRecord(
                    uri=str(folder / f"{n}.jpg"),
                    captured_at=T0 + timedelta(seconds=n),
                    utc_offset_minutes=120,
                    lat=48.1 + n / 1000,
                    lon=11.5,
                    reel="R1",
                    frame=n,
                )
                for n in frames
            ]
        )


@pytest.fixture
def catalog_file(tmp_path: Path) -> str:
    """A SQLite catalog of two placed, dated images of one reel."""
    path = str(tmp_path / "cat.db")
    add_images(path, tmp_path, range(1, 3))
    return path


def add_user_tables(gpkg: Path) -> None:
    """What a user and QGIS add to a GeoPackage: a layer of their own, the ``layer_styles`` table (QGIS's
    "Save as Default" style, written through GDAL as QGIS does) and a project stored in the file (QGIS's
    ``qgis_projects``, a plain SQLite table)."""
    point = np.array([struct.pack("<BIdd", 1, 1, 11.5, 48.1)], dtype=object)
    notes = [np.array(["manhole"], dtype=object)]
    pyogrio.raw.write(
        str(gpkg),
        point,
        notes,
        ["note"],
        layer="my_notes",
        driver="GPKG",
        geometry_type="Point",
        crs="EPSG:4326",
    )
    styles = [
        np.array(["images", "my_notes"], dtype=object),
        np.array(["<qgis>red</qgis>", "<qgis/>"], dtype=object),
    ]
    pyogrio.raw.write(
        str(gpkg), None, styles, ["f_table_name", "styleQML"], layer="layer_styles", driver="GPKG"
    )
    with sqlite3.connect(gpkg) as db:
        db.execute("CREATE TABLE qgis_projects(name TEXT PRIMARY KEY, metadata BLOB, content BLOB)")
        db.execute("INSERT INTO qgis_projects VALUES ('survey', x'00', x'504b')")
    db.close()


def layers(gpkg: Path) -> dict[str, int]:
    """Each layer of ``gpkg`` as GDAL lists it, with its number of features."""
    return {name: pyogrio.read_info(gpkg, layer=name)["features"] for name, _ in pyogrio.list_layers(gpkg)}


def user_tables(gpkg: Path) -> tuple[list[tuple[str, str]], list[tuple[str, bytes]]]:
    with sqlite3.connect(gpkg) as db:
        styles = db.execute("SELECT f_table_name, styleQML FROM layer_styles ORDER BY fid").fetchall()
        projects = db.execute("SELECT name, content FROM qgis_projects").fetchall()
    db.close()
    return styles, projects


def test_a_reexport_replaces_its_layer_and_keeps_the_others(capsys, catalog_file: str, tmp_path: Path):
    gpkg = tmp_path / "survey.gpkg"
    export = ("export", "--catalog", catalog_file, "-o", str(gpkg))
    assert run(capsys, *export)[0] == 0
    add_user_tables(gpkg)
    add_images(catalog_file, tmp_path, range(3, 4))  # the survey goes on: the next export has a row more

    code, _, err = run(capsys, *export)

    assert code == 0, err
    assert f"exported 3 image(s) to {gpkg} (its other layers kept: layer_styles, my_notes)" in err
    assert layers(gpkg) == {"images": 3, "my_notes": 1, "layer_styles": 2}
    assert user_tables(gpkg) == (
        [("images", "<qgis>red</qgis>"), ("my_notes", "<qgis/>")],
        [("survey", b"PK")],
    )
    meta, _, _, fields = pyogrio.raw.read(gpkg, layer="images")
    assert list(fields[list(meta["fields"]).index("frame")]) == [1, 2, 3]

    code, _, err = run(capsys, *export, "--of", "sequences")  # another layer of the same file

    assert code == 0 and "(its other layers kept: images, layer_styles, my_notes)" in err

    assert layers(gpkg) == {"images": 3, "my_notes": 1, "layer_styles": 2, "sequences": 1}
    assert user_tables(gpkg)[0] == [("images", "<qgis>red</qgis>"), ("my_notes", "<qgis/>")]


def test_a_geopackage_open_in_another_program_reads_the_new_layer(capsys, catalog_file: str, tmp_path: Path):
    """QGIS keeps a GeoPackage it shows open in SQLite's WAL mode: the export changes the file that program has
    open, in one SQLite transaction, so both it and any later reader find a sound file with the new rows (a file
    renamed over it would have been read through the other file's write-ahead log: a malformed database)."""
    gpkg = tmp_path / "survey.gpkg"
    export = ("export", "--catalog", catalog_file, "-o", str(gpkg))
    assert run(capsys, *export)[0] == 0
    add_user_tables(gpkg)
    qgis = sqlite3.connect(gpkg, isolation_level=None)
    try:
        assert qgis.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
        qgis.execute("UPDATE qgis_projects SET content = x'504b01'")  # the project saved: in the log
        add_images(catalog_file, tmp_path, range(3, 4))

        assert run(capsys, *export)[0] == 0

        assert qgis.execute("SELECT count(*) FROM images").fetchone() == (3,)
        qgis.execute("UPDATE qgis_projects SET content = x'504b02'")  # and saved again
    finally:
        qgis.close()
    assert layers(gpkg) == {"images": 3, "my_notes": 1, "layer_styles": 2}
    with sqlite3.connect(gpkg) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT content FROM qgis_projects").fetchall() == [(b"PK\x02",)]
    db.close()


def test_a_geopackage_another_program_is_writing_is_left_as_it_was(capsys, catalog_file: str, tmp_path: Path):
    gpkg = tmp_path / "survey.gpkg"
    export = ("export", "--catalog", catalog_file, "-o", str(gpkg))
    assert run(capsys, *export)[0] == 0
    before = gpkg.read_bytes()

    with locked(gpkg):  # QGIS saving its edits, for longer than SQLite waits
        code, _, err = run(capsys, *export, "--of", "sequences")

    assert code == 4
    assert err.startswith(
        f"error: cannot write {gpkg}: another program is writing to it (QGIS saving edits?)"
    ), err
    assert gpkg.read_bytes() == before


def test_a_failed_export_leaves_the_geopackage_as_it_was(
    capsys, catalog_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    gpkg = tmp_path / "survey.gpkg"
    export = ("export", "--catalog", catalog_file, "-o", str(gpkg))
    assert run(capsys, *export)[0] == 0
    add_user_tables(gpkg)
    before = gpkg.read_bytes()
    write = pyogrio.raw.write

    def write_then_fail(path: str, *args: object, **kwargs: object) -> None:  # GDAL stopping half-way
        write(path, *args, **kwargs)
        raise pyogrio.errors.DataLayerError("disk full")

    monkeypatch.setattr(pyogrio.raw, "write", write_then_fail)
    with pytest.raises(pyogrio.errors.DataLayerError):
        main(["export", "--catalog", catalog_file, "--of", "sequences", "-o", str(gpkg)])

    assert gpkg.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cat.db", "survey.gpkg"]  # nothing left over


def test_an_empty_file_is_replaced_and_another_file_refused(capsys, catalog_file: str, tmp_path: Path):
    """An empty file holds nothing to keep; a file that is no GeoPackage (a text, another database, a
    GeoPackage damaged) may hold what the export cannot tell, so it is refused, as a CSV export refuses to
    replace a ``.prj`` of another file."""
    empty, text, database = tmp_path / "empty.gpkg", tmp_path / "notes.gpkg", tmp_path / "data.gpkg"
    empty.touch()
    text.write_text("my notes\n")
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE readings(value REAL)")
    db.close()
    kept = {path: path.read_bytes() for path in (text, database)}

    assert run(capsys, "export", "--catalog", catalog_file, "-o", str(empty))[0] == 0
    assert layers(empty) == {"images": 2}
    for path in (text, database):
        code, _, err = run(capsys, "export", "--catalog", catalog_file, "-o", str(path))
        assert code == 2
        assert err.startswith(f"error: cannot write {path}: it is not a GeoPackage ("), err
        assert err.rstrip().endswith("give the export another name, or remove that file"), err
        assert path.read_bytes() == kept[path]
