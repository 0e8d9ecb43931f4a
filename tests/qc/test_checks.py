"""The track checks on synthetic tracks with known faults: precision and recall per flag."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panopipe.errors import ConfigError
from panopipe.qc import FLAGS, QcSettings, check_track
from panopipe.qc.fix import propose_fix
from panopipe.qc.synthetic import precision_recall, synthetic_track


@pytest.mark.parametrize("time_mode", [False, True], ids=["distance-mode", "time-mode"])
def test_every_flag_finds_the_injected_faults(time_mode: bool):
    track = synthetic_track(3000, time_mode=time_mode, seed=3)
    check = check_track(track.t, track.lat, track.lon, track.heading, QcSettings(), track.accuracy)
    assert check.time_mode is time_mode
    for name, truth in track.truth.items():
        assert len(truth) > 0, name
        precision, recall = precision_recall(np.flatnonzero(check.masks[name]), truth)
        assert precision >= 0.95 and recall >= 0.95, (name, precision, recall)
    assert set(check.masks) == set(FLAGS)


def test_a_clean_track_has_no_flags():
    track = synthetic_track(500, seed=5)
    keep = np.ones(len(track), dtype=bool)
    for frames in track.truth.values():
        keep[frames] = False
    keep[track.truth["duplicate"] - 1] = True  # the original of a duplicate is clean
    t, lat, lon, heading = track.t[keep], track.lat[keep], track.lon[keep], track.heading[keep]
    t = np.sort(t)  # the clock jumps removed
    check = check_track(t, lat, lon, heading, QcSettings(), track.accuracy[keep])
    found = {name: int(mask.sum()) for name, mask in check.masks.items() if name != "sequence-break"}
    assert found == dict.fromkeys(found, 0)


@pytest.mark.parametrize("late", [1, 10, 17, 18])
@pytest.mark.parametrize("seconds", [0.5, -0.5])
def test_a_wrong_clock_flags_its_own_frame_not_a_good_neighbour(late: int, seconds: float):
    """A frame whose time is half a second off sits 5 m from where its time puts it on a straight 10 m/s
    track, which is an outlier; the frames around it are where their times put them, the last frames of the
    track too, which only the two frames before them place."""
    t = np.arange(20.0)
    t[late] += seconds
    lat, lon = 48 + np.arange(20) * 10 / 111_320, np.full(20, 11.0)

    check = check_track(t, lat, lon, np.zeros(20), QcSettings())

    assert np.flatnonzero(check.masks["gps-outlier"]).tolist() == [late]
    assert check.values["gps-outlier"][late] == pytest.approx(5.0, abs=0.05)


def test_fix_moves_outliers_back_onto_the_track_and_thins_time_mode():
    track = synthetic_track(1500, time_mode=True, seed=8)
    settings = QcSettings()
    check = check_track(track.t, track.lat, track.lon, track.heading, settings)
    fix = propose_fix(check, track.t, track.lat, track.lon, track.heading, settings.thin_spacing_m)
    assert set(fix.moved) | set(fix.unfixable) == set(np.flatnonzero(check.masks["gps-outlier"]))
    lat, lon = track.lat.copy(), track.lon.copy()
    lat[fix.moved], lon[fix.moved] = fix.lat, fix.lon
    again = check_track(track.t, lat, lon, track.heading, settings)
    assert again.masks["gps-outlier"].sum() <= 2
    # Headings of moved frames follow the track (the generator's heading is the direction of travel).
    turned = np.abs((fix.heading - track.heading[fix.moved] + 180) % 360 - 180)
    assert np.median(turned) < 3
    # Thinning keeps frames about 5 m apart: a stationary run goes, and so do frames of slow stretches.
    kept = np.setdiff1d(np.arange(len(track)), fix.thinned)
    assert set(track.truth["stationary"]) < set(fix.thinned)
    x = np.radians(lon[kept]) * np.cos(np.radians(lat[kept])) * 6_371_000
    y = np.radians(lat[kept]) * 6_371_000
    spacing = np.hypot(np.diff(x), np.diff(y))
    assert np.median(spacing) >= 4.5


def test_one_frame_and_frames_without_positions_say_so():
    nan = np.array([np.nan])
    one = check_track(np.array([0.0]), np.array([48.1]), np.array([11.5]), nan, QcSettings())
    assert one.message == "1 frame(s) with a position: too few to check the track"
    none = check_track(np.zeros(3), np.full(3, np.nan), np.full(3, np.nan), np.full(3, np.nan), QcSettings())
    assert none.masks["no-position"].tolist() == [True, True, True]
    assert none.masks["gps-outlier"].sum() == 0


def test_docs_define_every_flag_and_threshold_with_its_default():
    from dataclasses import fields
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "qc.md").read_text(encoding="utf-8")
    for name in FLAGS:
        assert f"| `{name}` |" in text, name
    for key in fields(QcSettings):
        assert f"| `{key.name}` | {key.default} | {key.metadata['help']} |" in text, key.name


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"null_island_deg": math.nan}, "[qc] null_island_deg = nan: expected a number > 0"),
        ({"max_speed_mps": math.inf}, "[qc] max_speed_mps = inf: expected a number > 0"),
        ({"stationary_min_frames": 2.5}, "[qc] stationary_min_frames = 2.5: expected a whole number > 0"),
        ({"duplicate_m": True}, "[qc] duplicate_m = True: expected a number > 0"),
        ({"max_turn_deg": 500}, "[qc] max_turn_deg = 500: expected a number > 0, up to 180"),
        (
            {"duplicate_heading_deg": 180.5},
            "[qc] duplicate_heading_deg = 180.5: expected a number > 0, up to 180",
        ),
        ({"null_island_deg": 91}, "[qc] null_island_deg = 91: expected a number > 0, up to 90"),
    ],
)
def test_a_qc_threshold_that_is_no_finite_number_or_a_count_that_is_no_whole_number_is_an_error(
    table: dict[str, object], message: str
):
    with pytest.raises(ConfigError) as raised:
        QcSettings.from_config(table)
    assert str(raised.value) == message
    assert QcSettings.from_config({"stationary_min_frames": 3, "duplicate_m": 1}).stationary_min_frames == 3
    assert QcSettings.from_config({"max_turn_deg": 180}).max_turn_deg == 180  # the largest turn there is
