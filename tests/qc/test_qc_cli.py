"""panopipe qc through the command line and the library, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from panopipe.catalog import Catalog, ImageRecord, Selection
from panopipe.cli import main
from panopipe.demo import START_TIME
from panopipe.qc import run_qc
from panopipe.qc.synthetic import SyntheticTrack, precision_recall, synthetic_track


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def add_track(
    catalog: Catalog,
    reel: str,
    frames: int,
    *,
    time_mode: bool = False,
    seed: int = 14,
    camera: int | None = None,
) -> tuple[list[str], SyntheticTrack]:
    """A synthetic track as images of ``reel`` (ids by frame, of ``camera`` when given); its truth."""
    track = synthetic_track(frames, time_mode=time_mode, seed=seed)
    records = [
        ImageRecord(
            uri=f"/captures/{reel}/cam{camera}/{i:06d}.jpg",
            captured_at=START_TIME + timedelta(seconds=float(track.t[i])),
            lat=float(track.lat[i]),
            lon=float(track.lon[i]),
            heading=float(track.heading[i]),
            gps_accuracy_m=float(track.accuracy[i]),
            reel=reel,
            frame=i,
            camera_index=camera,
        )
        for i in range(len(track))
    ]
    catalog.upsert_images(records)
    by_uri = {image.uri: image.id for image in catalog.images(Selection(reels=(reel,)), limit=None)}
    ids = [by_uri[r.uri] for r in records]
    return ids, track


def test_qc_flags_are_stored_listed_shown_exported_and_replaced(capsys, catalog_url: str, tmp_path: Path):
    with Catalog.open(catalog_url) as catalog:
        ids, track = add_track(catalog, "R001", 600)
    code, out, err = cli(capsys, "qc", "--catalog", catalog_url, "--json")
    assert code == 0, err
    (reel,) = json.loads(out)["reels"]
    assert reel["reel"] == "R001" and reel["frames"] == len(track)
    for name, truth in track.truth.items():
        code, out, _ = cli(capsys, "ls", "--catalog", catalog_url, "--flag", name, "--json")
        found = np.array(sorted(ids.index(row["id"]) for row in json.loads(out)))
        assert precision_recall(found, truth) == (1.0, 1.0), name
        assert all(row["flags"] and name in row["flags"] for row in json.loads(out))
    outlier = ids[track.truth["gps-outlier"][0]]
    with Catalog.open(catalog_url) as catalog:
        (stored,) = catalog.flags_of(outlier)
    code, out, _ = cli(capsys, "show", outlier, "--catalog", catalog_url, "--json")
    (shown,) = json.loads(out)["flags"]
    assert shown["flag"] == "gps-outlier" and shown["value"] == stored.value > 5
    assert shown["detail"] == f"{stored.value:.2f} m off the track" and shown["run"] == stored.run
    code, out, _ = cli(capsys, "show", outlier, "--catalog", catalog_url)
    (line,) = [line for line in out.splitlines() if line.startswith("flags")]
    assert line.split(None, 1)[1] == f"gps-outlier = {stored.value:.6g} ({stored.value:.2f} m off the track)"
    code, out, _ = cli(capsys, "export", "--catalog", catalog_url, "--flag", "gps-outlier")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(track.truth["gps-outlier"]) and {r["flags"] for r in rows} == {"gps-outlier"}
    # A rerun replaces the flags: the same ones, no more.
    with Catalog.open(catalog_url) as catalog:
        before = {i: [f.flag for f in catalog.flags_of(i)] for i in ids}
        run_qc(catalog, Selection(reels=("R001",)))
        assert {i: [f.flag for f in catalog.flags_of(i)] for i in ids} == before


def test_qc_of_a_few_images_checks_them_on_their_reels_whole_track(capsys, catalog_url: str):
    """``qc --flag gps-outlier`` (or ``--id``, or a short ``--since`` window) had checked the selected frames
    alone: too few for a track, it cleared every outlier flag it could not check. Each selected image is now
    checked on its reel's whole track; only the selected images' flags are replaced."""
    with Catalog.open(catalog_url) as catalog:
        ids, track = add_track(catalog, "R001", 600)
    assert cli(capsys, "qc", "--catalog", catalog_url)[0] == 0
    outliers = {ids[i] for i in track.truth["gps-outlier"]}
    flagged = ["ls", "--catalog", catalog_url, "--flag", "gps-outlier", "--json"]
    assert {row["id"] for row in json.loads(cli(capsys, *flagged)[1])} == outliers

    code, out, err = cli(capsys, "qc", "--catalog", catalog_url, "--flag", "gps-outlier", "--json")

    assert code == 0 and "too few" not in out + err, err
    assert {row["id"] for row in json.loads(cli(capsys, *flagged)[1])} == outliers
    # the other images' flags are not the selection's to replace: a duplicate flag elsewhere stays
    with Catalog.open(catalog_url) as catalog:
        others = {i: [f.flag for f in catalog.flags_of(i)] for i in ids if i not in outliers}
        (outlier,) = sorted(outliers)[:1]
        report = run_qc(catalog, Selection(ids=(outlier,)), fix=True, dry_run=True)
        assert {c.image_id for c in report.changes} == {outlier}
        assert {f.image_id for f in report.flags} == {outlier}
        assert {i: [f.flag for f in catalog.flags_of(i)] for i in others} == others


def test_qc_fix_dry_run_writes_nothing_then_one_undoable_batch(capsys, catalog_url: str):
    with Catalog.open(catalog_url) as catalog:
        ids, track = add_track(catalog, "T001", 400, time_mode=True, seed=4)
        original = {i.id: (i.lat, i.lon, i.heading) for i in catalog.images()}
    code, out, err = cli(capsys, "qc", "--fix", "--dry-run", "--json", "--catalog", catalog_url)
    assert code == 0, err
    proposal = json.loads(out)
    assert proposal["batch"] is None and proposal["reels"][0]["time_mode"] is True
    fields = {c["field"] for c in proposal["changes"]}
    assert fields == {"lat", "lon", "heading", "excluded"}
    with Catalog.open(catalog_url) as catalog:
        assert catalog.history() == [] and catalog.count(Selection(flags=("gps-outlier",))) == 0
    code, out, err = cli(capsys, "qc", "--fix", "--json", "--catalog", catalog_url)
    applied = json.loads(out)
    assert code == 0 and applied["changes"] == proposal["changes"]
    with Catalog.open(catalog_url) as catalog:
        edits = catalog.history()
        assert {e.batch for e in edits} == {applied["batch"]} and len(edits) == len(proposal["changes"])
        moved = catalog.get(ids[track.truth["gps-outlier"][0]])
        assert moved.edited_fields == ("heading", "lat", "lon")
        assert all(catalog.get(ids[i]).excluded for i in track.truth["stationary"])
    # Checked again, the corrected track has (almost) no outliers, and nothing is left to fix.
    code, out, _ = cli(capsys, "qc", "--fix", "--dry-run", "--json", "--catalog", catalog_url)
    again = json.loads(out)
    assert again["reels"][0]["gps-outlier"] <= 2 and len(again["changes"]) <= 6
    code, _, err = cli(capsys, "undo", applied["batch"], "--catalog", catalog_url)
    assert code == 0, err
    with Catalog.open(catalog_url) as catalog:
        assert {i.id: (i.lat, i.lon, i.heading) for i in catalog.images()} == original
        assert not any(i.excluded for i in catalog.images())


def test_bad_input_is_a_message_per_reel(capsys, tmp_path: Path):
    db = str(tmp_path / "c.db")
    with Catalog.open(db) as catalog:
        catalog.upsert_images(
            [
                ImageRecord(uri="/a/1.jpg", reel="ONE", frame=1, lat=48.1, lon=11.5),
                ImageRecord(uri="/b/1.jpg", reel="NOGPS", frame=1),
                ImageRecord(uri="/b/2.jpg", reel="NOGPS", frame=2),
            ]
        )
    code, out, _ = cli(capsys, "qc", "--catalog", db, "--json")
    messages = {r["reel"]: r["messages"] for r in json.loads(out)["reels"]}
    assert messages["ONE"] == ["1 frame(s) with a position: too few to check the track"]
    assert "2 frame(s) without a position: not on the track" in messages["NOGPS"]
    code, _, err = cli(capsys, "qc", "--fix", "--catalog", db)
    assert (code, err.splitlines()[0]) == (0, "nothing to fix")  # no empty "edit None" table
    assert cli(capsys, "history", "--catalog", db, "--json")[1] == "[]\n"
    config = tmp_path / "panopipe.toml"
    config.write_text("[qc]\noutlier_deviation = 3\n")
    code, _, err = cli(capsys, "qc", "--catalog", db, "--config", str(config))
    assert code == 2 and err.startswith("error:") and "did you mean 'outlier_deviation_m'?" in err
    config.write_text("[qc]\noutlier_deviation_m = -1\n")
    code, _, err = cli(capsys, "qc", "--catalog", db, "--config", str(config))
    assert code == 2 and "expected a number > 0" in err
    code, _, err = cli(capsys, "ls", "--catalog", db, "--flag", "outlier")
    assert code == 2 and "unknown --flag 'outlier'" in err


def test_each_camera_of_a_rig_is_its_own_track_and_shots_are_thinned_whole(catalog: Catalog):
    cameras = [add_track(catalog, "RIG", 800, time_mode=True, seed=6, camera=c) for c in (0, 1)]
    report = run_qc(catalog, fix=True)
    (reel,) = report.reels
    assert reel.frames == 2 * len(cameras[0][1]) and reel.time_mode
    flagged = [
        {
            name: sorted(ids.index(f.image_id) for f in report.flags if f.flag == name and f.image_id in ids)
            for name in ("gps-outlier", "stationary")
        }
        for ids, _ in cameras
    ]
    assert flagged[0] == flagged[1] and flagged[0]["gps-outlier"]
    excluded = [
        sorted(ids.index(c.image_id) for c in report.changes if c.field == "excluded" and c.image_id in ids)
        for ids, _ in cameras
    ]
    assert excluded[0] == excluded[1] and len(excluded[0]) > 0


def test_thinning_keeps_or_excludes_every_frame_of_a_rig_shot_together(catalog: Catalog):
    """Camera 1 sits 0.6 of a frame's step ahead of camera 0 (and fires 2 ms later): its own thinning would
    keep other frames than camera 0's, leaving shots with one camera to stitch."""
    track = synthetic_track(400, time_mode=True, seed=6)
    ahead = {
        name: np.interp(np.arange(len(track)) + 0.6, np.arange(len(track)), getattr(track, name))
        for name in ("lat", "lon")
    }
    records = [
        ImageRecord(
            uri=f"/captures/RIG/cam{camera}/{i:06d}.jpg",
            captured_at=START_TIME + timedelta(seconds=float(track.t[i]) + 0.002 * camera),
            lat=float((track.lat if camera == 0 else ahead["lat"])[i]),
            lon=float((track.lon if camera == 0 else ahead["lon"])[i]),
            reel="RIG",
            frame=i,
            camera_index=camera,
        )
        for camera in (0, 1)
        for i in range(len(track))
    ]
    catalog.upsert_images(records)
    catalog.assign_shots(["RIG"], 0.05)
    shots = {image.id: image.shot for image in catalog.images(limit=None)}
    assert len(set(shots.values()) - {None}) == len(track)  # each shot: cameras 0 and 1

    report = run_qc(catalog, fix=True)

    excluded = [shots[c.image_id] for c in report.changes if c.field == "excluded"]
    assert len(excluded) > 0 and sorted(Counter(excluded).values()) == [2] * (len(excluded) // 2)
    assert report.reels[0].thinned == len(excluded)


def test_without_the_extra_qc_says_what_to_install(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    db = str(tmp_path / "c.db")
    with Catalog.open(db) as catalog:
        add_track(catalog, "R001", 20)
    monkeypatch.setitem(sys.modules, "pyproj", None)  # as if not installed: importing it fails
    code, _, err = cli(capsys, "qc", "--catalog", db)
    assert code == 2 and err == "error: panopipe qc needs pyproj and shapely: pip install 'panopipe[qc]'\n"
    with Catalog.open(db) as catalog:
        assert catalog.count(Selection(flags=("gps-outlier", "duplicate"))) == 0
