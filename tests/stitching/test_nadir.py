"""The nadir cap on real pixels: where it lies, how a logo is oriented, and what it leaves alone."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from panopipe.steps.pixels import decode_pixels
from panopipe.stitching import synthetic_panorama
from panopipe.stitching.nadir import BLUR, cap_geometry, cover_nadir, fit_logo, parse_fill

WIDTH, HEIGHT = 1024, 512


def panorama() -> np.ndarray:
    return synthetic_panorama(WIDTH, HEIGHT, seed=3)[..., ::-1].copy()  # BGR, as OpenCV decodes


def row_at(latitude_deg: float) -> int:
    return int((90 - latitude_deg) / 180 * HEIGHT)


def column_at(longitude_deg: float) -> int:
    return int((longitude_deg + 180) / 360 * WIDTH) % WIDTH


def test_a_colour_covers_the_disc_and_nothing_above_it():
    original = panorama()
    covered = original.copy()

    cover_nadir(covered, 20.0, parse_fill("#3366cc"))

    top = cap_geometry(WIDTH, HEIGHT, 20.0).top
    assert np.array_equal(covered[:top], original[:top])
    inside = covered[row_at(-90 + 19) :]
    assert np.abs(inside.astype(int) - [0xCC, 0x66, 0x33]).max() <= 1
    outside = slice(top, row_at(-90 + 21))
    assert np.array_equal(covered[outside], original[outside])


def test_a_logo_reads_upright_to_a_viewer_facing_forward_and_looking_down():
    logo = np.zeros((64, 64, 4), np.uint8)
    logo[..., 3] = 255
    logo[:32, :, :3] = (0, 0, 255)  # top half red (BGR)
    logo[32:, :, :3] = (255, 0, 0)  # bottom half blue
    logo[20:44, 40:, :3] = (0, 255, 0)  # a green patch on the right, across the middle
    covered = panorama()

    cover_nadir(covered, 30.0, parse_fill("#000000"), logo)

    near_rim = row_at(-90 + 25)
    assert tuple(covered[near_rim, column_at(0)]) == (0, 0, 255)  # forward: the logo's top
    assert tuple(covered[near_rim, column_at(180)]) == (255, 0, 0)  # behind: its bottom
    assert tuple(covered[near_rim, column_at(90)]) == (0, 255, 0)  # right: its right
    assert tuple(covered[near_rim, column_at(-90)]) != (0, 255, 0)


def wide_logo() -> np.ndarray:
    """A real 4:1 logo, as the nadir step decodes it: a PNG of 600x150, opaque red with a white bar across its
    middle, BGRA."""
    image = Image.new("RGBA", (600, 150), (255, 0, 0, 255))
    ImageDraw.Draw(image).rectangle([40, 65, 559, 84], fill=(255, 255, 255, 255))
    png = io.BytesIO()
    image.save(png, "PNG")
    return decode_pixels(png.getvalue(), "logo.png", alpha=True)


def test_a_logo_that_is_not_square_keeps_its_shape_centred_with_nothing_around_it():
    fitted = fit_logo(wide_logo(), 200)

    assert fitted.shape == (200, 200, 4)
    opaque = np.argwhere(fitted[..., 3] > 0)
    (top, left), (bottom, right) = opaque.min(axis=0), opaque.max(axis=0)
    assert (left, right) == (0, 199)  # its longer side spans the disc's square
    assert (top, bottom) == (75, 124)  # 200 / 4 rows high, centred
    assert (fitted[top : bottom + 1, :, 3] == 255).all()
    assert (fitted[100, 20:180, :3] >= 250).all() and tuple(fitted[80, 100, :3]) == (0, 0, 255)
    square = np.zeros((200, 200, 4), np.uint8)
    assert fit_logo(square, 200) is square  # at the disc's size already: as it is


def test_a_wide_logo_reads_four_times_wider_than_high_with_the_fill_around_it():
    covered = panorama()

    cover_nadir(covered, 20.0, parse_fill("#00ff00"), wide_logo())

    def reach(longitude_deg: float) -> float:
        """How far from straight down the logo reaches towards ``longitude_deg``, in degrees."""
        top = cap_geometry(WIDTH, HEIGHT, 20.0).top
        column = covered[top:, column_at(longitude_deg)].astype(int)
        first = top + np.argmax((column[:, 2] > 200) & (column[:, 1] < 60))  # the first red row down
        return 180 - (first + 0.5) / HEIGHT * 180

    green = covered[row_at(-90 + 10), column_at(0)]  # 10° ahead: above the logo in a view looking down
    assert tuple(green) == (0, 255, 0)
    assert tuple(covered[row_at(-90 + 10), column_at(90)])[2] > 200  # 10° to the right: the logo
    forward, right = (math.tan(math.radians(reach(lon))) for lon in (0, 90))
    assert right / forward == pytest.approx(
        4, rel=0.15
    )  # in the down view's plane: its width over its height


def test_a_transparent_logo_shows_the_fill_and_the_rim_is_sharp():
    logo = np.zeros((32, 32, 4), np.uint8)  # fully transparent
    original = panorama()
    covered = original.copy()

    cover_nadir(covered, 20.0, parse_fill("#ffffff"), logo)

    assert (covered[row_at(-90 + 19) :] >= 254).all()
    assert np.array_equal(covered[row_at(-90 + 20.5)], original[row_at(-90 + 20.5)])


def test_a_blurred_disc_keeps_the_ground_s_tone_and_fades_into_the_panorama():
    original = panorama()
    vehicle = slice(row_at(-90 + 30), HEIGHT)  # detail where the rig sees its vehicle
    original[vehicle] = np.random.default_rng(1).integers(60, 200, original[vehicle].shape, np.uint8)
    covered = original.copy()

    cover_nadir(covered, 24.0, parse_fill(BLUR))

    core = slice(row_at(-90 + 12), HEIGHT)
    assert (
        covered[core].astype(float).std(axis=1).mean() < original[core].astype(float).std(axis=1).mean() / 4
    )
    assert abs(covered[core].mean() - original[row_at(-90 + 24) :].mean()) < 5
    rim = row_at(-90 + 23.5)  # in the fading quarter: between the two
    changed = np.abs(covered[rim].astype(int) - original[rim]).mean()
    core_changed = np.abs(covered[row_at(-90 + 5)].astype(int) - original[row_at(-90 + 5)]).mean()
    assert 0 < changed < core_changed


def test_the_maps_of_one_size_are_made_once():
    cap_geometry.cache_clear()
    cover_nadir(panorama(), 20.0, (0, 0, 0))
    cover_nadir(panorama(), 20.0, (0, 0, 0))
    assert cap_geometry.cache_info().hits == 1
    assert cap_geometry(WIDTH, HEIGHT, 20.0).top == math.floor(HEIGHT * 160 / 180)


@pytest.mark.parametrize("text", ["#12345", "red", "#gg0000", "", "#1234567"])
def test_a_fill_is_blur_or_a_hex_colour(text: str):
    with pytest.raises(ValueError, match="#RRGGBB"):
        parse_fill(text)
    assert parse_fill("#102030") == (0x30, 0x20, 0x10)
