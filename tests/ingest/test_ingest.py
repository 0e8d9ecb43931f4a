"""Ingest of real JPEGs (a rendered rig survey) into catalogs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.cli import main
from panopipe.config import IngestRules, Settings, load_settings
from panopipe.errors import ConfigError
from panopipe.ingest import ingest
from panopipe.metadata.writer import MetadataUpdate, apply_metadata_file

SETTINGS = Settings()


def test_ingest_twice_adds_nothing(catalog: Catalog, survey: Path):
    first = ingest(catalog, [survey], SETTINGS)
    assert (first.added, first.updated, first.failed) == (12, 0, [])
    assert first.bytes_read > 0
    second = ingest(catalog, [survey], SETTINGS)
    assert (second.added, second.updated, second.unchanged, second.files_read) == (0, 0, 12, 0)
    assert catalog.count() == 12


def test_reel_frame_camera_and_shots(catalog: Catalog, survey: Path):
    ingest(catalog, [survey], SETTINGS)
    images = list(catalog.images())
    assert {(i.reel, i.frame) for i in images} == {("R001", 1), ("R001", 2)}
    by_shot: dict[str, list[int]] = {}
    for image in images:
        by_shot.setdefault(image.shot, []).append(image.camera_index)
    assert {shot: sorted(cams) for shot, cams in by_shot.items()} == {
        "R001-000001": [0, 1, 2, 3, 4, 5],
        "R001-000002": [0, 1, 2, 3, 4, 5],
    }


def test_a_reel_named_on_a_mac_is_selected_by_the_name_typed_elsewhere(catalog: Catalog, survey: Path):
    """A folder copied on a Mac is named in Unicode's decomposed form (NFD): its reel could not be selected by
    its name typed on Linux or Windows (composed, NFC), and the hint suggested a name that looked the same."""
    typed, on_a_mac = unicodedata.normalize("NFC", "Rüe"), unicodedata.normalize("NFD", "Rüe")
    (survey / "R001").rename(survey / on_a_mac)
    ingest(catalog, [survey], SETTINGS)

    assert {image.reel for image in catalog.images()} == {typed}
    assert catalog.count(Selection(reels=(typed,))) == catalog.count(Selection(reels=(on_a_mac,))) == 12
    assert {image.shot for image in catalog.images()} == {f"{typed}-000001", f"{typed}-000002"}
    assert catalog.count(Selection(shots=(f"{on_a_mac}-000001",))) == 6
    # a catalog ingested before names were composed holds the decomposed name: it is selected all the same
    catalog.upsert_images([ImageRecord(uri=str(survey / "older.jpg"), reel=on_a_mac)])
    assert on_a_mac in {image.reel for image in catalog.images()}
    assert catalog.count(Selection(reels=(typed,))) == 13
    assert catalog.unknown_names(Selection(reels=(typed,), shots=(f"{typed}-000001",))) == []
    (typo,) = catalog.unknown_names(Selection(reels=("Rüex",)))
    assert typo.describe() == f"no reel 'Rüex' in the catalog (did you mean {typed!r}?)"


def test_the_default_rules_read_the_upper_case_names_cameras_write(catalog: Catalog, survey: Path):
    for n, path in enumerate(sorted(survey.rglob("*.jpg"))):  # R001/cam0/R001_cam0_000001.JPG, .JPEG
        path.rename(path.with_suffix((".jpg", ".JPG", ".JPEG")[n % 3]))
    ingest(catalog, [survey], SETTINGS)
    images = list(catalog.images())
    assert {path.suffix for path in survey.rglob("*.*")} == {".jpg", ".JPG", ".JPEG"}
    assert sorted((i.reel, i.frame, i.camera_index) for i in images) == [
        ("R001", f, c) for f in (1, 2) for c in range(6)
    ]


def test_files_that_are_not_jpeg_are_counted_not_read(capsys, catalog: Catalog, survey: Path, tmp_path: Path):
    for name in (
        "R001/track.gpx",
        "R001/cam0/R001_cam0_000009.png",
        "R001/cam1/frame.PNG",
        "README",
        ".DS_Store",
    ):
        (survey / name).write_bytes(b"not a JPEG")

    report = ingest(catalog, [survey], SETTINGS)

    assert (report.added, report.failed, report.not_jpeg) == (12, [], {".gpx": 1, ".png": 2, "": 1})
    assert report.to_dict()["not_jpeg"] == {"": 1, ".gpx": 1, ".png": 2}
    assert main(["ingest", str(survey), "--catalog", str(tmp_path / "cli.db")]) == 0
    assert (
        capsys.readouterr().err == "not read: 4 file(s) that are not JPEG (no extension 1, .gpx 1, .png 2)\n"
    )


def test_a_name_that_is_not_utf8_fails_alone(capsys, catalog: Catalog, survey: Path, tmp_path: Path):
    """Latin-1 bytes in a name (unzip of a Windows zip): the catalog's insert raised, a traceback, nothing added."""
    odd = survey / os.fsdecode(b"R001/cam0/caf\xe9_000009.jpg")
    odd.write_bytes((survey / "R001/cam0/R001_cam0_000001.jpg").read_bytes() + b"other content")

    report = ingest(catalog, [survey], SETTINGS)

    reason = "the name is not valid UTF-8 (another encoding's, as unzip leaves from a Windows zip): rename the file"
    shown = f"{survey}/R001/cam0/caf\\xe9_000009.jpg"
    assert report.added == 12 and [(f.uri, f.reason) for f in report.failed] == [(shown, reason)]
    assert main(["ingest", str(survey), "--catalog", str(tmp_path / "cli.db")]) == 1
    assert f"error: {shown}: {reason}\n" in capsys.readouterr().err


def test_the_pipelines_own_outputs_are_counted_not_read(
    capsys, catalog: Catalog, survey: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A survey folder (or bucket) that holds the pipeline's output, ingested whole: its panoramas, previews
    and thumbnails were catalogued as new images (a published R001/demo_R001_000001.jpg as reel R001, frame
    1), which regrouped the real shots and made publish collide on every shot."""
    monkeypatch.chdir(tmp_path)  # roots relative to the config file's folder, as a user writes them
    config = tmp_path / "panopipe.toml"
    config.write_text(
        '[panopipe]\noutput_prefix = "survey/deploy-out"\n'
        '[steps.pipeline]\noutput = "survey/panopipe-out"\n'
        '[steps.publish]\nroot = "survey/published"\n'
    )
    frame = (survey / "R001/cam0/R001_cam0_000001.jpg").read_bytes()
    outputs = {
        "panopipe-out/stitch/shot/R001-000001/panorama-0a1b.jpg": frame + b"1",  # another content each:
        "panopipe-out/stitch/shot/R001-000001/log.json": b"{}",  # no copy of a frame (a duplicate)
        "published/demo/R001/demo_R001_000001.jpg": frame + b"2",
        "deploy-out/R001/cam0/R001_cam0_000009.jpg": frame + b"3",
    }
    for name, data in outputs.items():
        (survey / name).parent.mkdir(parents=True, exist_ok=True)
        (survey / name).write_bytes(data)
    catalog.upsert_images([ImageRecord(uri=str(survey / "panopipe-out/old.jpg"))])  # catalogued before
    settings = load_settings(config)

    report = ingest(catalog, [survey], settings)

    assert (report.added, report.deleted, report.failed, report.not_jpeg) == (12, 0, [], {})
    assert report.to_dict()["own_outputs"] == {
        f"{survey}/deploy-out/": 1,
        f"{survey}/panopipe-out/": 2,
        f"{survey}/published/": 1,
    }
    assert {image.uri for image in catalog.images() if "R001/cam" not in image.uri} == {
        str(survey / "panopipe-out/old.jpg")  # left alone, as the event handler leaves it: not deleted
    }
    assert {image.shot for image in catalog.images() if image.shot} == {"R001-000001", "R001-000002"}
    with pytest.raises(ConfigError, match=r"demo_R001_000001.jpg is inside the output root .*/published \("):
        ingest(catalog, [survey / "published/demo/R001/demo_R001_000001.jpg"], settings)  # one of its outputs

    assert main(["ingest", "survey", "--catalog", str(tmp_path / "cli.db")]) == 0
    assert capsys.readouterr().err == (
        f"not read: 4 file(s) under panopipe's own output roots ({survey}/deploy-out/ 1, "
        f"{survey}/panopipe-out/ 2, {survey}/published/ 1): its outputs are no survey images\n"
    )


def test_custom_path_rules(catalog: Catalog, survey: Path):
    rules = IngestRules(path_pattern=r"(?P<reel>R\d+)/cam(?P<camera>\d)/.*_(?P<frame>\d+)\.jpg$")
    ingest(catalog, [survey], Settings(ingest=rules))
    assert {(i.camera_index, i.frame) for i in catalog.images(Selection(reels=("R001",)))} == {
        (c, f) for c in range(6) for f in (1, 2)
    }


@pytest.mark.exiftool
def test_captured_metadata_agrees_with_exiftool(catalog: Catalog, survey: Path):
    ingest(catalog, [survey], SETTINGS)
    image = next(catalog.images(Selection(reels=("R001",))))
    (oracle,) = json.loads(
        subprocess.run(["exiftool", "-json", "-n", image.uri], capture_output=True, check=True).stdout
    )
    assert image.lat == pytest.approx(oracle["GPSLatitude"], abs=1e-9)
    assert image.lon == pytest.approx(oracle["GPSLongitude"], abs=1e-9)
    assert image.alt == pytest.approx(oracle["GPSAltitude"], abs=1e-9)
    assert image.heading == pytest.approx(oracle["GPSImgDirection"])
    assert image.gps_accuracy_m == pytest.approx(oracle["GPSHPositioningError"])
    assert (image.make, image.model, image.width, image.height) == (
        oracle["Make"],
        oracle["Model"],
        oracle["ImageWidth"],
        oracle["ImageHeight"],
    )
    # exiftool gives local time with its offset; the catalog keeps UTC and the offset.
    assert image.captured_at.isoformat().startswith("2024-05-01T08:30:00")
    assert oracle["OffsetTimeOriginal"] == "+02:00" and image.utc_offset_minutes == 120


def test_changed_moved_deleted_and_corrupt_files(catalog: Catalog, survey: Path):
    ingest(catalog, [survey], SETTINGS)
    before = {i.uri: i for i in catalog.images()}
    changed = survey / "R001/cam0/R001_cam0_000001.jpg"
    apply_metadata_file(changed, update=MetadataUpdate(gps_altitude=600.25))
    moved_from = survey / "R001/cam1/R001_cam1_000001.jpg"
    moved_to = survey / "R001/cam1/renamed_000001.jpg"
    moved_from.rename(moved_to)
    deleted = survey / "R001/cam2/R001_cam2_000002.jpg"
    deleted.unlink()
    corrupt = survey / "R001/cam3/R001_cam3_000099.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM")

    report = ingest(catalog, [survey], SETTINGS)

    assert [f.uri for f in report.failed] == [str(corrupt)]
    assert "truncated" in report.failed[0].reason
    assert report.deleted == 1
    after = {i.uri: i for i in catalog.images(Selection(include_deleted=True))}
    assert after[str(changed)].alt == 600.25 and after[str(changed)].id == before[str(changed)].id
    assert after[str(moved_to)].id == before[str(moved_from)].id
    assert str(moved_from) not in after
    assert after[str(deleted)].deleted
    failed = after[str(corrupt)]
    assert failed.status == "failed" and "truncated" in failed.error
    assert catalog.count(Selection(status="failed")) == 1


def test_parallel_and_serial_reads_agree(catalog: Catalog, survey: Path, tmp_path: Path):
    parallel = ingest(catalog, [survey], SETTINGS, workers=2)
    with Catalog.open(tmp_path / "serial.db") as serial:
        ingest(serial, [survey], SETTINGS, workers=1)
        rows = sorted((i.uri, i.lat, i.captured_at, i.shot) for i in serial.images())
    assert rows == sorted((i.uri, i.lat, i.captured_at, i.shot) for i in catalog.images())
    assert parallel.added == 12


def test_a_mistyped_source_stops_the_ingest_before_any_source_is_read(
    catalog: Catalog, survey: Path, tmp_path: Path
):
    from panopipe.errors import ConfigError

    missing = tmp_path / "nope"
    with pytest.raises(
        ConfigError, match=f"^{missing} does not exist: give a folder, a JPEG file or an s3://"
    ):
        ingest(catalog, [survey, missing], SETTINGS)
    with pytest.raises(ConfigError, match=re.escape("s3:... is neither a path nor a URL")):
        ingest(catalog, [survey, "s3:/survey-bucket"], SETTINGS)
    notes = tmp_path / "notes.txt"  # named, as a folder's other files are skipped: not read, not catalogued
    notes.write_text("x")
    with pytest.raises(ConfigError, match=f"^{notes} is not a JPEG file \\(.jpg, .jpeg\\): give a folder"):
        ingest(catalog, [survey, notes], SETTINGS)
    assert catalog.count() == 0
    assert ingest(catalog, [f"file://{survey}"], SETTINGS).added == 12


def test_a_camera_folder_linked_in_is_read_and_a_loop_of_links_is_walked_once(
    catalog: Catalog, survey: Path, tmp_path: Path
):
    """A camera's folder on another disk, linked into the reel: its frames were left out, and an ingest after
    the link was made marked them deleted (their files still there), leaving shots of 5 frames."""
    ingest(catalog, [survey], SETTINGS)
    elsewhere = tmp_path / "other-disk" / "cam5"
    elsewhere.parent.mkdir()
    shutil.move(survey / "R001" / "cam5", elsewhere)
    (survey / "R001" / "cam5").symlink_to(elsewhere, target_is_directory=True)
    (survey / "R001" / "cam4" / "back").symlink_to(survey / "R001", target_is_directory=True)  # a loop

    report = ingest(catalog, [survey], SETTINGS)

    assert (report.deleted, report.failed, report.unchanged) == (0, [], 12)
    frames: dict[str | None, int] = {}
    for image in catalog.images():
        frames[image.shot] = frames.get(image.shot, 0) + 1
    assert catalog.count() == 12 and sorted(frames.values()) == [6, 6]


def test_a_file_another_ingest_added_meanwhile_is_no_copy_of_itself(
    catalog: Catalog, catalog_url: str, survey: Path
):
    """Two ingests of one folder at once: the second to write found the files the first added while it read
    them, and recorded each as a duplicate (a copy) of itself, which every later ingest reported."""
    settings = Settings()
    other: list[object] = []

    def the_other_ingest(done: int, total: int) -> None:
        if not other:
            with Catalog.open(catalog_url, create=False) as at_once:
                other.append(ingest(at_once, [survey], settings))

    report = ingest(catalog, [survey], settings, workers=1, progress=the_other_ingest)

    assert other and report.duplicates == [] and report.updated + report.unchanged == 12
    again = ingest(catalog, [survey], settings)
    assert (again.unchanged, again.unchanged_copies, again.duplicates) == (12, 0, [])
    assert catalog.known_copies(str(survey)) == {}


def test_a_copy_of_catalogued_files_is_reported_once_as_duplicates_and_not_added(
    capsys, catalog: Catalog, survey: Path, tmp_path: Path
):
    ingest(catalog, [survey], SETTINGS)
    copy = tmp_path / "copy"
    shutil.copytree(survey, copy)
    new_frame = copy / "R001/cam0/R001_cam0_000003.jpg"
    apply_metadata_file(
        copy / "R001/cam0/R001_cam0_000002.jpg", new_frame, update=MetadataUpdate(gps_altitude=601.5)
    )

    # The CLI says so in one line, exit code 0: nothing failed. --json lists every duplicate.
    assert main(["ingest", str(copy), "--catalog", catalog.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["updated"], report["failed"]) == (1, 0, [])
    assert sorted((d["uri"], d["original_uri"]) for d in report["duplicates"]) == sorted(
        (str(copy / path.relative_to(survey)), str(path)) for path in survey.rglob("*.jpg")
    )
    assert catalog.count() == 13 and str(new_frame) in {i.uri for i in catalog.images()}
    # The copies are known now: not read again, unchanged.
    again = ingest(catalog, [copy], SETTINGS)
    assert (again.unchanged, again.unchanged_copies, again.duplicates, again.files_read) == (13, 12, [], 0)

    touched = copy / "R001/cam1/R001_cam1_000001.jpg"
    os.utime(touched, (1e9, 1e9))  # a copy that changed is read again, and said again
    assert main(["ingest", str(copy), "--catalog", catalog.url]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(
        "added 0, updated 0, unchanged 12 (11 of them copies of images elsewhere), deleted 0, failed 0 in "
    )
    assert captured.err == (
        f"warning: not added: 1 duplicate(s), files whose content the catalog holds already, such as {touched} "
        f"(the same as {survey / touched.relative_to(copy)}); --json lists them all\n"
    )


def catalogued_with_a_copy(catalog: Catalog, survey: Path, tmp_path: Path) -> Path:
    """Ingest ``survey``, then a copy of it (its 12 files duplicates, known as copies from then on); the copy."""
    ingest(catalog, [survey], SETTINGS)
    copy = tmp_path / "copy"
    shutil.copytree(survey, copy)
    assert len(ingest(catalog, [copy], SETTINGS).duplicates) == 12
    return copy


def test_a_copy_is_read_again_once_its_image_holds_other_content_or_its_file_is_gone(
    catalog: Catalog, survey: Path, tmp_path: Path
):
    copy = catalogued_with_a_copy(catalog, survey, tmp_path)
    # One image's file changes: its copy holds its old content, a frame no image has now.
    changed = survey / "R001/cam0/R001_cam0_000001.jpg"
    apply_metadata_file(changed, update=MetadataUpdate(gps_altitude=600.25))
    ingest(catalog, [survey], SETTINGS)
    report = ingest(catalog, [copy], SETTINGS)
    assert (report.files_read, report.added, report.unchanged_copies) == (1, 1, 11)
    # The survey's folder goes: the copies are where its images' files are now, and take them over.
    ids = {Path(i.uri).name: i.id for i in catalog.images() if i.uri.startswith(str(survey))}
    shutil.rmtree(survey)
    moved = ingest(catalog, [copy], SETTINGS)
    assert (moved.updated, moved.files_read, moved.unchanged) == (11, 11, 1)
    in_copy = {Path(i.uri).name: i.id for i in catalog.images() if i.uri.startswith(str(copy))}
    assert len(in_copy) == 12 and catalog.count() == 13  # + the changed frame's image, its file gone with it
    assert {name: in_copy[name] for name in ids if name != changed.name} == {
        name: image_id for name, image_id in ids.items() if name != changed.name
    }


def test_of_files_with_the_same_content_in_one_ingest_the_first_is_added(catalog: Catalog, survey: Path):
    frame = survey / "R001/cam0/R001_cam0_000001.jpg"
    shutil.copy(frame, survey / "R001/cam0/R001_cam0_000009.jpg")
    report = ingest(catalog, [survey], SETTINGS)
    assert report.added == 12
    assert [(d.uri, d.original_uri) for d in report.duplicates] == [
        (str(survey / "R001/cam0/R001_cam0_000009.jpg"), str(frame))
    ]


def test_a_moved_folder_keeps_its_images_edits_and_shots(catalog: Catalog, survey: Path, tmp_path: Path):
    ingest(catalog, [survey], SETTINGS)
    before = {(i.camera_index, i.frame): i for i in catalog.images()}
    first = before[(0, 1)]
    catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(first.id,)), assign={"alt": 12.5}), reason="r", author="a"
    )
    moved = tmp_path / "archive/R001"
    moved.parent.mkdir()
    (survey / "R001").rename(moved)
    # A file of the survey that stayed behind, copied: its image is still there, so the copy is a duplicate.
    left = survey / "R001/cam1/R001_cam1_000002.jpg"
    left.parent.mkdir(parents=True)
    shutil.copy(moved / "cam1/R001_cam1_000002.jpg", left)

    report = ingest(catalog, [moved], SETTINGS)

    assert (report.added, report.updated, report.deleted) == (0, 11, 0)
    assert [(d.uri, d.original_uri) for d in report.duplicates] == [
        (str(moved / "cam1/R001_cam1_000002.jpg"), str(left))
    ]
    after = {(i.camera_index, i.frame): i for i in catalog.images()}
    assert {key: i.id for key, i in after.items()} == {key: i.id for key, i in before.items()}
    assert after[(0, 1)].uri == str(moved / "cam0/R001_cam0_000001.jpg") and after[(0, 1)].alt == 12.5
    assert {key: i.shot for key, i in after.items()} == {key: i.shot for key, i in before.items()}
    assert catalog.count() == 12


def test_one_file_ingested_alone_leaves_the_files_whose_names_start_with_its_name(
    catalog: Catalog, survey: Path
):
    frame = survey / "R001/cam0/R001_cam0_000001.jpg"
    longer = survey / "R001/cam0/R001_cam0_000001.jpg (1).jpg"  # as a browser names a second download
    apply_metadata_file(frame, longer, update=MetadataUpdate(gps_altitude=3.5))
    ingest(catalog, [survey], SETTINGS)

    report = ingest(catalog, [frame], SETTINGS)

    assert (report.unchanged, report.deleted) == (1, 0)
    assert catalog.count() == 13


def test_a_source_that_holds_no_file_is_reported(capsys, catalog: Catalog, survey: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    report = ingest(catalog, [survey, empty], SETTINGS)
    assert report.added == 12 and report.empty_sources == [str(empty)]

    assert main(["ingest", str(empty), "--catalog", catalog.url]) == 0
    assert capsys.readouterr().err == (
        f"warning: nothing to ingest in {empty}: it holds no file (check the path or prefix)\n"
    )


def test_workers_must_be_at_least_one(catalog: Catalog, survey: Path):
    from panopipe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^workers must be at least 1, got 0$"):
        ingest(catalog, [survey], SETTINGS, workers=0)
    assert catalog.count() == 0


def test_a_copy_of_a_deleted_images_file_brings_the_image_back(
    catalog: Catalog, survey: Path, tmp_path: Path
):
    copy = catalogued_with_a_copy(catalog, survey, tmp_path)
    lost = survey / "R001/cam2/R001_cam2_000001.jpg"
    image_id = next(i.id for i in catalog.images() if i.uri == str(lost))
    catalog.apply_edit(
        catalog.plan_edit(Selection(ids=(image_id,)), assign={"alt": 7.5}), reason="r", author="a"
    )
    lost.unlink()
    assert ingest(catalog, [survey], SETTINGS).deleted == 1

    report = ingest(catalog, [copy], SETTINGS)

    assert (report.updated, report.added, report.files_read, report.unchanged_copies) == (1, 0, 1, 11)
    back = catalog.get(image_id)
    assert (back.uri, back.deleted, back.alt) == (str(copy / lost.relative_to(survey)), False, 7.5)
    assert catalog.count() == 12


def test_a_stray_frame_gone_leaves_the_shot_it_split_whole_again(catalog: Catalog, survey: Path):
    """An extra camera-0 file with frame 1's capture time splits shot 1; once it is deleted, the next ingest
    groups the reel again (before, only the reels of files read were regrouped: the shots stayed split)."""

    def cameras_by_shot() -> dict[str | None, list[int | None]]:
        found: dict[str | None, list[int | None]] = {}
        for image in catalog.images():
            found.setdefault(image.shot, []).append(image.camera_index)
        return {shot: sorted(cameras, key=str) for shot, cameras in found.items()}

    ingest(catalog, [survey], SETTINGS)
    whole = cameras_by_shot()
    stray = survey / "R001" / "cam0" / "R001_cam0_000009.jpg"
    shutil.copy(survey / "R001" / "cam0" / "R001_cam0_000001.jpg", stray)
    apply_metadata_file(stray, update=MetadataUpdate(artist="stray"))  # other bytes: not a copy
    ingest(catalog, [survey], SETTINGS)
    assert cameras_by_shot() != whole

    stray.unlink()
    assert ingest(catalog, [survey], SETTINGS).deleted == 1
    assert cameras_by_shot() == whole


def test_a_frame_an_ingest_moves_to_another_shot_makes_every_shot_it_changed_stale(
    catalog: Catalog, survey: Path, tmp_path: Path
):
    """Camera 5's file of frame 1, its capture time rewritten to frame 2's, ingested again: the regrouping
    changes the shots it left and joined, whose other frames did not change; before, only a new shot was
    planned and the shots that lost frames stayed 'published' with their old panoramas."""
    from panopipe.config import load_settings
    from panopipe.demo import write_project_config
    from panopipe.executors import InlineExecutor
    from panopipe.pipeline import plan, run

    settings = load_settings(write_project_config(tmp_path, str(tmp_path / "unused.db"), (160, 120)))
    ingest(catalog, [survey], settings)
    run(catalog, steps=["stitch"], settings=settings, executor=InlineExecutor())
    assert len(plan(catalog, steps=["stitch"], settings=settings)) == 0

    def frames() -> dict[str | None, set[str]]:
        found: dict[str | None, set[str]] = {}
        for image in catalog.images():
            found.setdefault(image.shot, set()).add(image.id)
        return found

    before = frames()
    by_name = {Path(image.uri).name: image for image in catalog.images()}
    second = by_name["R001_cam0_000002.jpg"]
    assert second.captured_at is not None
    moved_at = second.captured_at + timedelta(milliseconds=10)
    update = MetadataUpdate(captured_at=moved_at, utc_offset_minutes=second.utc_offset_minutes)
    apply_metadata_file(survey / "R001" / "cam5" / "R001_cam5_000001.jpg", update=update)

    ingest(catalog, [survey], settings)

    after = frames()
    changed = {shot for shot in after if after[shot] != before.get(shot)}
    assert len(changed) >= 2 and all(after[shot] for shot in changed)
    stale = {item.subject for item in plan(catalog, steps=["stitch"], settings=settings)}
    assert stale == {f"shot:{shot}" for shot in changed}


_KILLED_BEFORE_GROUPING = """
import os, sys
from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.ingest import ingest
Catalog.assign_shots = lambda *args, **kwargs: os._exit(137)  # the process killed once the images are written
ingest(Catalog.open(sys.argv[1]), [sys.argv[2]], Settings())
"""


def test_an_ingest_killed_before_grouping_its_frames_is_made_whole_by_the_next(
    catalog_url: str, survey: Path, tmp_path: Path
):
    """An ingest killed between writing its images and grouping them into shots: the next one, which reads
    no file again, groups the reels whose frames are in no shot (they had stayed out of every shot, and
    `plan` had said everything was up to date)."""
    from panopipe.config import load_settings
    from panopipe.demo import write_project_config
    from panopipe.pipeline import plan

    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_BEFORE_GROUPING, catalog_url, str(survey)], capture_output=True
    )
    assert killed.returncode == 137, killed.stderr
    settings = load_settings(write_project_config(tmp_path, str(tmp_path / "unused.db"), (160, 120)))
    with Catalog.open(catalog_url) as catalog:
        assert {image.shot for image in catalog.images()} == {None}

        again = ingest(catalog, [survey], settings)

        assert (again.unchanged, again.files_read) == (12, 0)
        assert {image.shot for image in catalog.images()} == {"R001-000001", "R001-000002"}
        stitches = {item.subject for item in plan(catalog, steps=["stitch"], settings=settings)}
        assert stitches == {"shot:R001-000001", "shot:R001-000002"}
