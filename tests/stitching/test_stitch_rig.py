"""Rig profiles: validation names the bad field, round trips, and what the fingerprint covers."""

from __future__ import annotations

import math
import textwrap
import tomllib

import pytest

from panopipe.demo import demo_rig
from panopipe.errors import ConfigError
from panopipe.stitching.rig import RigProfile, starter_profile


def _profile(**camera_changes: object) -> dict:
    camera = {
        "index": 0,
        "yaw_deg": 0.0,
        "pitch_deg": 0.0,
        "roll_deg": 0.0,
        "lens": "rectilinear",
        "hfov_deg": 90.0,
        "width": 640,
        "height": 480,
    }
    camera.update(camera_changes)
    return {
        "name": "van",
        "version": 1,
        "mount_height_m": 2.0,
        "cameras": [{k: v for k, v in camera.items() if v is not None}],
    }


def test_demo_rig_round_trips_through_dict() -> None:
    rig = demo_rig()
    assert RigProfile.from_dict(rig.to_dict()) == rig
    assert [camera.index for camera in rig.cameras] == list(range(6))
    assert {camera.lens for camera in rig.cameras} == {"rectilinear", "fisheye"}


def test_compact_form_expands_defaults_and_overrides() -> None:
    rig = RigProfile.from_compact(
        {
            "name": "pair",
            "version": 3,
            "mount_height_m": 1.8,
            "defaults": {"lens": "fisheye", "hfov_deg": 200, "width": 960, "height": 960},
            "cameras": [[0, 0, 0], {"yaw_deg": 180, "hfov_deg": 190}],
        }
    )
    assert [(c.index, c.yaw_deg, c.hfov_deg, c.lens) for c in rig.cameras] == [
        (0, 0.0, 200.0, "fisheye"),
        (1, 180.0, 190.0, "fisheye"),
    ]


def test_focal_px_is_an_alternative_to_hfov() -> None:
    rig = RigProfile.from_dict(_profile(hfov_deg=None, focal_px=320.0))
    assert math.isclose(rig.cameras[0].hfov_deg, 90.0)
    assert math.isclose(rig.cameras[0].focal_px, 320.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lens": "pinhole"}, r"cameras\[0\]\.lens must be one of rectilinear, fisheye, got 'pinhole'"),
        ({"hfov_deg": 200.0}, r"cameras\[0\]\.hfov_deg must be in \(0, 179\], got 200"),
        ({"width": 0}, r"cameras\[0\]\.width must be at least 8, got 0"),
        ({"height": "480"}, r"cameras\[0\]\.height must be an integer, got '480'"),
        ({"pitch_deg": 120.0}, r"cameras\[0\]\.pitch_deg must be in \[-90, 90\], got 120"),
        ({"yaw_deg": float("nan")}, r"cameras\[0\]\.yaw_deg must be a finite number"),
        ({"roll_deg": True}, r"cameras\[0\]\.roll_deg must be a finite number, got True"),
        ({"yaw": 10.0}, r"cameras\[0\]: unknown field\(s\) yaw"),
        ({"index": 1}, r"camera indexes must be 0\.\.0 once each, got \[1\]"),
        ({"focal_px": 300.0}, r"cameras\[0\]: give exactly one of hfov_deg and focal_px"),
    ],
)
def test_invalid_camera_fields_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RigProfile.from_dict(_profile(**changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, r"name must be a non-empty string"),
        ({"version": 0}, r"'van': version must be at least 1, got 0"),
        ({"mount_height_m": -1}, r"'van': mount_height_m must be in \(0, 100\]"),
        ({"cameras": []}, r"'van': cameras must be a non-empty list"),
        ({"lenses": []}, r"rig profile: unknown field\(s\) lenses"),
    ],
)
def test_invalid_profile_fields_are_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RigProfile.from_dict({**_profile(), **changes})


def test_fingerprint_follows_geometry_not_name_or_version() -> None:
    rig = demo_rig()
    renamed = RigProfile.from_dict({**rig.to_dict(), "name": "other", "version": 7, "mount_height_m": 1.0})
    corrected = rig.replace_camera(2, yaw_deg=181.5)
    assert renamed.fingerprint_fields() == rig.fingerprint_fields()
    assert corrected.fingerprint_fields() != rig.fingerprint_fields()
    assert corrected.cameras[2].yaw_deg == 181.5


def test_replace_camera_validates() -> None:
    with pytest.raises(ConfigError, match=r"cameras\[1\]\.hfov_deg"):
        demo_rig().replace_camera(1, hfov_deg=-5.0)


def test_compact_docstring_example_parses_as_toml() -> None:
    docstring = RigProfile.from_compact.__doc__ or ""
    example = textwrap.dedent(docstring.split("Example (TOML)::")[1])
    rig = RigProfile.from_compact(tomllib.loads(example))
    assert (rig.name, rig.version, len(rig.cameras)) == ("van-6", 2, 5)
    assert (rig.cameras[4].lens, rig.cameras[4].pitch_deg, rig.cameras[4].hfov_deg) == (
        "fisheye",
        90.0,
        110.0,
    )


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({i: (640, 480) for i in range(6)}, [(i * 60.0, 640, 480) for i in range(6)]),
        ({0: (640, 480), 1: (320, 240)}, [(0.0, 640, 480), (180.0, 320, 240)]),
    ],
)
def test_starter_profile_pastes_as_a_valid_profile_and_says_it_is_a_guess(
    sizes: dict[int, tuple[int, int]], expected: list[tuple[float, int, int]]
) -> None:
    text = starter_profile(sizes)
    rig = RigProfile.from_compact(tomllib.loads(text)["steps"]["stitch"]["rig"])
    assert [(c.yaw_deg, c.width, c.height) for c in rig.cameras] == expected
    assert text.startswith("[steps.stitch.rig]\n") and text.count("GUESS") >= 3


def test_size_mismatch_names_the_camera_and_only_the_wrong_settings() -> None:
    rig = demo_rig(640, 480)
    assert rig.size_mismatch(2, 640, 480) is None
    assert rig.size_mismatch(2, 640, 360) == (
        "camera 2 of rig 'panopipe-demo-6' has height = 480 but its frame is 640x360: "
        "set height = 360 for camera 2 in [steps.stitch.rig]"
    )
    assert rig.size_mismatch(0, 320, 240) == (
        "camera 0 of rig 'panopipe-demo-6' has width = 640 and height = 480 but its frame is 320x240: "
        "set width = 320, height = 240 for camera 0 in [steps.stitch.rig]"
    )
