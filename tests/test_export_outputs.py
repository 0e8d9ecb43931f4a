"""Where ``export -o`` and ``report --html`` write: through a link, into a FIFO or device as it is, to stdout
for ``-``; never over the catalog, the config file in use, a catalogued image or an output of the pipeline, nor
over a file beside the export that is not one of its sidecars."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from panopipe.catalog import Catalog, ImageRecord
from panopipe.cli import main
from panopipe.storage import open_atomic


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    """A SQLite catalog of two placed images."""
    path = tmp_path / "cat.db"
    catalog = Catalog.open(path)
    catalog.upsert_images(
        [
            ImageRecord(uri=str(tmp_path / f"{n}.jpg"), lat=48.1 + n / 1000, lon=11.5, reel="R1", frame=n)
            for n in (1, 2)
        ]
    )
    catalog.close()
    return path


class FifoReader:
    """What a reader of the FIFO at ``path`` gets, read in a thread while the test writes."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.data = b""
        self.thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self.thread.start()

    def _read(self, path: Path) -> None:
        with open(path, "rb") as fifo:
            self.data = fifo.read()

    def result(self) -> bytes:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "nothing was written to the FIFO"
        return self.data


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[Path, FifoReader]]:
    path = tmp_path / "pipe"
    reader = FifoReader(path)
    yield path, reader
    if reader.thread.is_alive() and stat.S_ISFIFO(path.lstat().st_mode):  # unblock a failed test's reader
        with open(path, "wb"):
            pass


def test_open_atomic_writes_into_a_fifo_and_keeps_it(fifo: tuple[Path, FifoReader]):
    path, reader = fifo

    with open_atomic(path) as handle:
        handle.write(b"streamed\n")

    assert reader.result() == b"streamed\n"
    assert stat.S_ISFIFO(path.lstat().st_mode)


def test_open_atomic_replaces_the_file_a_link_names_and_keeps_the_link(tmp_path: Path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "survey.csv"
    target.write_bytes(b"before\n")
    link = tmp_path / "survey.csv"
    link.symlink_to(target)
    dangling = tmp_path / "new.csv"
    dangling.symlink_to(tmp_path / "real" / "new.csv")

    with open_atomic(link) as handle:
        handle.write(b"after\n")
    with open_atomic(dangling) as handle:
        handle.write(b"created\n")

    assert link.is_symlink() and link.readlink() == target and target.read_bytes() == b"after\n"
    assert dangling.is_symlink() and (tmp_path / "real" / "new.csv").read_bytes() == b"created\n"
    assert sorted(os.listdir(tmp_path / "real")) == ["new.csv", "survey.csv"]  # no temporary file left


def test_export_to_a_fifo_streams_the_csv_without_sidecars(capsys, catalog_file: Path, fifo):
    path, reader = fifo

    assert run(capsys, "export", "--catalog", str(catalog_file), "--format", "csv", "-o", str(path))[0] == 0

    rows = list(csv.DictReader(io.StringIO(reader.result().decode())))
    assert [row["frame"] for row in rows] == ["1", "2"]
    assert stat.S_ISFIFO(path.lstat().st_mode)
    assert not list(path.parent.glob("pipe.*"))


def test_export_through_a_link(capsys, catalog_file: Path, tmp_path: Path):
    link = tmp_path / "latest.geojson"
    (tmp_path / "exports").mkdir()
    link.symlink_to(tmp_path / "exports" / "2024.geojson")

    assert run(capsys, "export", "--catalog", str(catalog_file), "-o", str(link))[0] == 0

    assert link.is_symlink() and '"FeatureCollection"' in link.read_text()
    assert os.listdir(tmp_path / "exports") == ["2024.geojson"]


@pytest.mark.parametrize(
    "args",
    [
        ("export", "--format", "csv", "-o", "{catalog}"),
        ("export", "-o", "{catalog}-wal", "--format", "csv"),
        ("export", "-o", "{folder}/cat.csv"),  # its sidecar cat.prj: a link to the catalog, below
        ("export", "-o", "{folder}/link.gpkg"),
        ("report", "--html", "{catalog}"),
        ("report", "--html", "{folder}/link.gpkg"),
    ],
)
def test_the_catalog_is_never_an_output(capsys, catalog_file: Path, args: tuple[str, ...]):
    (catalog_file.parent / "link.gpkg").symlink_to(catalog_file)
    (catalog_file.parent / "cat.prj").symlink_to(catalog_file)
    before = catalog_file.read_bytes()
    names = {"catalog": str(catalog_file), "folder": str(catalog_file.parent)}

    code, out, err = run(capsys, *(arg.format(**names) for arg in args), "--catalog", str(catalog_file))

    assert code == 2 and f"it is a file of the catalog {catalog_file}" in err and len(err.splitlines()) == 1
    assert catalog_file.read_bytes() == before and out == ""


@pytest.mark.parametrize(
    "args",
    [
        ("export", "--format", "geojson", "-o", "{folder}/1.jpg"),
        ("export", "-o", "{folder}/image_link.geojson"),
        ("export", "--format", "gpkg", "-o", "{config}", "--config", "{config}"),
        ("report", "--html", "{folder}/panopipe.toml"),  # the current folder's: the config in use
        ("report", "--html", "{folder}/1.jpg"),
    ],
)
def test_a_catalogued_image_or_the_config_file_is_never_an_output(
    capsys, catalog_file: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
):
    folder = catalog_file.parent
    monkeypatch.chdir(folder)
    config = folder / "panopipe.toml"
    config.write_text("[panopipe]\nproject = 'p'\n")
    image = folder / "1.jpg"
    image.write_bytes(b"\xff\xd8 a JPEG")
    (folder / "image_link.geojson").symlink_to(image)
    names = {"config": str(config), "folder": str(folder)}

    given = [arg.format(**names) for arg in args]

    code, out, err = run(capsys, *given, "--catalog", str(catalog_file))

    what = "the config file in use" if given[-1].endswith(".toml") else "an image of the catalog"
    assert code == 2 and f"it is {what}; give another name" in err and len(err.splitlines()) == 1
    assert image.read_bytes() == b"\xff\xd8 a JPEG" and config.read_text() == "[panopipe]\nproject = 'p'\n"
    assert out == ""


def test_an_output_of_the_pipeline_is_never_an_output(
    capsys, tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "d"
    code, _, err = run(capsys, "demo", "--folder", str(folder), "--shots", "1", "--catalog", catalog_url)
    assert code == 0, err
    monkeypatch.chdir(folder)
    common = ("--catalog", catalog_url, "--config", "panopipe.toml")
    (stitched,) = Path("panopipe-out/stitch").rglob("panorama-*.jpg")  # relative to the current folder
    published = folder / "panopipe-out/publish/demo/R001/demo_R001_000001.jpg"
    Path("latest.csv").symlink_to(folder / "panopipe-out/publish/thumbnails/demo/R001/demo_R001_000001.jpg")
    files = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    shot = "shot:R001-000001"

    for args, named, made in [
        (("report", "--html", str(stitched)), stitched, f"stitch {shot}"),
        (("export", "--format", "csv", "-o", str(published)), published, f"publish {shot}"),
        (("report", "--html", str(published)), published, f"publish {shot}"),
        (
            ("export", "-o", "latest.csv"),
            "latest.csv",
            f"publish {shot}",
        ),  # a link to the published thumbnail
    ]:
        code, out, err = run(capsys, *args, *common)

        expected = (
            f"error: cannot write {named}: it is an output of the pipeline ({made}); give another name\n"
        )
        assert (code, out, err) == (2, "", expected)
    assert {
        path: path.read_bytes() for path in folder.rglob("*") if path.is_file()
    } == files  # no sidecar either
    assert run(capsys, "verify", *common)[0] == 0


def test_sidecars_never_replace_other_files(capsys, catalog_file: Path, tmp_path: Path):
    db = str(catalog_file)
    shapefile_prj = tmp_path / "roads.prj"
    shapefile_prj.write_text("a shapefile's CRS\n")

    code, _, err = run(capsys, "export", "--catalog", db, "-o", str(tmp_path / "roads.csv"))
    assert code == 2 and "roads.prj exists and is not of a CSV export" in err
    code, _, err = run(capsys, "export", "--catalog", db, "--format", "csv", "-o", str(tmp_path / "col.prj"))
    assert code == 2 and "its .prj sidecar would overwrite it; name it .csv" in err

    assert shapefile_prj.read_text() == "a shapefile's CRS\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.db", "roads.prj"]
    # a CSV export replaced: its sidecars with it
    assert run(capsys, "export", "--catalog", db, "-o", str(tmp_path / "survey.csv"))[0] == 0
    (tmp_path / "survey.prj").write_text("stale\n")
    assert run(capsys, "export", "--catalog", db, "-o", str(tmp_path / "survey.csv"))[0] == 0
    assert (tmp_path / "survey.prj").read_text().startswith('GEOGCS["WGS 84"')
    # another export of the name but the suffix would replace them: refused, naming the CSV they are of (the
    # message had said they were not of a CSV export)
    code, _, err = run(
        capsys, "export", "--catalog", db, "--format", "csv", "-o", str(tmp_path / "survey.txt")
    )
    assert code == 2 and "survey.csvt exists and is the sidecar of survey.csv, whose name it shares" in err


def test_report_to_stdout(capsys, catalog_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)

    code, out, err = run(capsys, "report", "--catalog", str(catalog_file), "--html", "-")

    assert code == 0 and out.startswith("<!DOCTYPE html>") and "2 images" in out
    assert not (tmp_path / "-").exists() and "stdout" in err


def test_a_geopackage_of_another_extension_is_written_without_a_library_warning(
    capsys, catalog_file: Path, tmp_path: Path
):
    output = tmp_path / "survey.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # GDAL's "The filename extension should be 'gpkg'" among them
        code, _, err = run(
            capsys, "export", "--catalog", str(catalog_file), "--format", "gpkg", "-o", str(output)
        )

    assert code == 0 and "exported 2 image(s)" in err and "Warning" not in err
    with sqlite3.connect(output) as db:
        assert db.execute("SELECT table_name, data_type FROM gpkg_contents").fetchall() == [
            ("images", "features")
        ]
