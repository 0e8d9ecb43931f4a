"""Calibrated stitching: render a known scene through a rig, stitch it back, compare with the scene."""

from __future__ import annotations

import re

import numpy as np
import pytest

from panopipe.demo import demo_rig
from panopipe.errors import ConfigError, StepError
from panopipe.stitching import (
    CalibratedStitcher,
    RigProfile,
    psnr,
    render_views,
    synthetic_panorama,
)
from panopipe.stitching.calibrated import REFINE_VERSION, output_size, remap_tables
from panopipe.stitching.projection import camera_rotation
from panopipe.stitching.refine import refine_rig

WIDTH, HEIGHT = 1024, 512


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return synthetic_panorama(WIDTH, HEIGHT, seed=7)


@pytest.fixture(scope="module")
def rig() -> RigProfile:
    return demo_rig(480, 360)


@pytest.fixture(scope="module")
def views(scene: np.ndarray, rig: RigProfile) -> list[np.ndarray]:
    return render_views(scene, rig)


def test_demo_rig_stitches_back_to_the_scene(
    scene: np.ndarray, rig: RigProfile, views: list[np.ndarray]
) -> None:
    result = CalibratedStitcher(rig).stitch(views, {"width": WIDTH, "height": HEIGHT})
    assert result.panorama.shape == scene.shape and result.panorama.dtype == np.uint8
    assert result.coverage.all(), "the demo rig covers the full sphere"
    assert result.views_used == 6
    assert psnr(result.panorama, scene, result.coverage) >= 30
    assert "6 of 6 views -> 1024x512, coverage 100.0%" in result.log


def test_mis_set_yaw_lowers_psnr_clearly(scene: np.ndarray, rig: RigProfile, views: list[np.ndarray]) -> None:
    params = {"width": WIDTH, "height": HEIGHT}
    good = CalibratedStitcher(rig).stitch(views, params)
    wrong = CalibratedStitcher(rig.replace_camera(1, yaw_deg=95.0)).stitch(views, params)
    assert psnr(wrong.panorama, scene, wrong.coverage) < psnr(good.panorama, scene, good.coverage) - 4


def test_back_to_back_fisheyes_round_trip() -> None:
    rig = RigProfile.from_compact(
        {
            "name": "dual-fisheye",
            "version": 1,
            "mount_height_m": 1.5,
            "defaults": {"lens": "fisheye", "hfov_deg": 200.0, "width": 576, "height": 576},
            "cameras": [[0, 0, 0], [180, 0, 0]],
        }
    )
    scene = synthetic_panorama(WIDTH, HEIGHT, seed=3)
    result = CalibratedStitcher(rig).stitch(render_views(scene, rig), {"width": WIDTH})
    assert result.coverage.all()
    assert psnr(result.panorama, scene, result.coverage) >= 30


def test_horizon_ring_covers_a_band_and_tables_are_reused(scene: np.ndarray, views: list[np.ndarray]) -> None:
    ring = RigProfile.from_dict(
        {**demo_rig(480, 360).to_dict(), "cameras": demo_rig(480, 360).to_dict()["cameras"][:4]}
    )
    stitcher = CalibratedStitcher(ring)
    first = stitcher.stitch(views[:4], {"width": WIDTH, "height": HEIGHT, "interpolation": "cubic"})
    second = stitcher.stitch(views[:4], {"width": WIDTH, "height": HEIGHT, "interpolation": "cubic"})
    assert "remap tables cached" in second.log
    assert np.array_equal(first.panorama, second.panorama)
    rows = first.coverage.all(axis=1)
    assert rows[HEIGHT // 2] and not rows[0] and not rows[-1]
    assert not first.panorama[~first.coverage].any(), "uncovered pixels stay black"
    assert psnr(first.panorama, scene, first.coverage) >= 32


@pytest.mark.parametrize("cameras", [6, 4], ids=["sphere", "horizon-ring"])
def test_tile_weights_sum_to_255_where_covered_and_tiles_stay_inside(cameras: int) -> None:
    rig = demo_rig(480, 360)
    rig = RigProfile.from_dict({**rig.to_dict(), "cameras": rig.to_dict()["cameras"][:cameras]})
    tables = remap_tables(rig.cameras, WIDTH + 16, HEIGHT)  # a width whose blocks wrap past the right edge
    total = np.zeros((HEIGHT, WIDTH + 16), np.int32)
    wrapped_blocks = 0
    for tiles in tables.cameras:
        lefts = {tile.left for tile in tiles}
        wrapped_blocks += 0 in lefts and max(lefts) > WIDTH // 2
        for tile in tiles:
            assert tile.top + tile.rows <= HEIGHT and tile.left + tile.columns <= WIDTH + 16
            assert tile.weight.dtype == np.uint8 and tile.map1.shape[:2] == tile.weight.shape[:2]
            total[tile.top : tile.top + tile.rows, tile.left : tile.left + tile.columns] += tile.weight[
                ..., 0
            ]
    assert wrapped_blocks, "a camera's block crosses the right edge"
    assert (total[tables.coverage] == 255).all(), "weights sum to exactly 255 wherever a camera sees"
    assert not total[~tables.coverage].any()


def test_auto_interpolation_is_bicubic_at_the_rigs_resolution_and_bilinear_where_the_panorama_magnifies() -> (
    None
):
    rig = demo_rig(80, 60)
    width, height = output_size(rig)
    views = render_views(synthetic_panorama(width * 8, height * 8, seed=3), rig)
    stitcher = CalibratedStitcher(rig)

    def stitch(interpolation: str, factor: int) -> np.ndarray:
        size = {"width": width * factor, "height": height * factor}
        return stitcher.stitch(views, {**size, "interpolation": interpolation})

    native = stitch("auto", 1)
    assert np.array_equal(native.panorama, stitch("cubic", 1).panorama)
    assert "interpolation auto: bilinear on 0% of the warped pixels" in native.log
    magnified = stitch("auto", 8)  # every frame pixel spans at least 1.7 panorama pixels, even in the corners
    assert np.array_equal(magnified.panorama, stitch("linear", 8).panorama)
    assert "interpolation auto: bilinear on 100% of the warped pixels" in magnified.log
    mixed = stitch("auto", 2)  # the fisheyes and the horizon cameras' centres magnified, their corners not
    assert not np.array_equal(mixed.panorama, stitch("cubic", 2).panorama)
    assert not np.array_equal(mixed.panorama, stitch("linear", 2).panorama)
    share = int(re.search(r"bilinear on (\d+)%", mixed.log)[1])  # type: ignore[index]
    assert 20 < share < 95


def test_default_output_size_follows_the_finest_camera() -> None:
    assert output_size(demo_rig(1200, 900)) == (2640, 1320)
    assert output_size(demo_rig(1200, 900), 2000) == (2000, 1000)


def test_frames_must_match_the_rig(rig: RigProfile, views: list[np.ndarray]) -> None:
    stitcher = CalibratedStitcher(rig)
    with pytest.raises(StepError, match="rig 'panopipe-demo-6' has 6 cameras but the shot has 5 frames"):
        stitcher.stitch(views[:5])
    resized = [*views[:5], views[5][:300]]
    expected = "camera 5 of rig 'panopipe-demo-6' has height = 360 but its frame is 480x300: set height = 300"
    with pytest.raises(StepError, match=re.escape(expected)):
        stitcher.stitch(resized)
    with pytest.raises(StepError, match="frame 0 is not an 8-bit colour image"):
        stitcher.stitch([view.astype(np.float32) for view in views])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"widht": 100}, r"unknown parameter\(s\) widht"),
        ({"width": 10}, r"width must be an integer from 16 to 65536, got 10"),
        ({"interpolation": "lanczos"}, r"interpolation must be one of auto, linear, cubic"),
    ],
)
def test_bad_params_are_config_errors(
    rig: RigProfile, views: list[np.ndarray], params: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        CalibratedStitcher(rig).stitch(views, params)


def test_fingerprint_changes_with_the_rig_and_the_params(rig: RigProfile) -> None:
    stitcher = CalibratedStitcher(rig)
    base = stitcher.fingerprint_fields({"width": 1024})
    assert base["stitcher"] == "calibrated" and base["params"]["width"] == 1024
    assert CalibratedStitcher(rig.replace_camera(0, roll_deg=1.0)).fingerprint_fields({"width": 1024}) != base
    assert stitcher.fingerprint_fields({"width": 2048}) != base


def test_refine_recovers_mis_set_angles(scene: np.ndarray, rig: RigProfile, views: list[np.ndarray]) -> None:
    wrong = rig.replace_camera(1, yaw_deg=92.0).replace_camera(2, pitch_deg=1.0)
    params = {"width": WIDTH, "height": HEIGHT}
    before = CalibratedStitcher(wrong).stitch(views, params)
    after = CalibratedStitcher(wrong).stitch(views, {**params, "refine": True})
    assert after.rig is not None and before.rig is None
    for true, refined in zip(rig.cameras, after.rig.cameras, strict=True):
        error = camera_rotation(refined) @ camera_rotation(true).T
        assert np.degrees(np.arccos(np.clip((np.trace(error) - 1) / 2, -1, 1))) < 0.3, f"camera {true.index}"
    assert psnr(after.panorama, scene, after.coverage) > psnr(before.panorama, scene, before.coverage) + 5
    assert re.search(r"refine: \d+ matches in 15 camera pairs", after.log)
    assert re.search(r"camera 1: moved (1\.9|2\.0)\d°", after.log)


def test_refine_without_features_keeps_the_profile(rig: RigProfile) -> None:
    flat = [np.full((camera.height, camera.width, 3), 128, np.uint8) for camera in rig.cameras]
    result = CalibratedStitcher(rig).stitch(flat, {"width": 256, "refine": True})
    assert result.rig == rig
    assert "profile left unchanged" in result.log


def test_refine_keeps_the_profile_when_the_fit_moves_a_camera_more_than_max_correction(
    rig: RigProfile, views: list[np.ndarray]
) -> None:
    wrong = rig.replace_camera(1, yaw_deg=rig.cameras[1].yaw_deg + 2.0)
    assert refine_rig(wrong, views, max_correction_deg=2.5)[0] != wrong  # corrected where 2° is allowed
    refined, log = refine_rig(wrong, views, max_correction_deg=1.8)
    assert refined == wrong
    assert re.search(
        r"camera 1 would move 1\.9\d°, more than max_correction_deg 1\.8°: profile left unchanged", log
    )


def test_refine_never_wrecks_an_exact_profile_from_a_few_chance_matches() -> None:
    # a cube of 100° cameras: 10° overlaps with few features; 14 matches once moved two cameras 38°
    lens = {"lens": "rectilinear", "hfov_deg": 100, "width": 512, "height": 512}
    poses = [[0, 0, 0], [90, 0, 0], [180, 0, 0], [270, 0, 0], [0, 90, 0], [0, -90, 0]]
    cube = RigProfile.from_compact(
        {"name": "cube6", "version": 1, "mount_height_m": 2, "defaults": lens, "cameras": poses}
    )
    scene = np.roll(synthetic_panorama(1920, 960, seed=3), -112, axis=1)
    frames = render_views(scene, cube)
    params = {"width": 1360, "height": 680}
    plain = CalibratedStitcher(cube).stitch(frames, params)
    refined = CalibratedStitcher(cube).stitch(frames, {**params, "refine": True})
    assert refined.rig == cube
    assert re.search(r"refine: camera \d has \d+ consistent matches with the others \(12 needed", refined.log)
    assert np.array_equal(refined.panorama, plain.panorama)


def test_only_refined_shots_are_stitched_again_when_refining_changes(rig: RigProfile) -> None:
    stitcher = CalibratedStitcher(rig)
    assert "refine_version" not in stitcher.fingerprint_fields({"width": 1024})
    assert stitcher.fingerprint_fields({"width": 1024, "refine": True})["refine_version"] == REFINE_VERSION
