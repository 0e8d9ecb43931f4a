"""Benchmark: panopipe's calibrated rig stitcher against Hugin (nona + enblend) and OpenCV's stitcher.

Renders the views of a rig from the synthetic scene and writes them as TIFF files; every side goes from
those files to a panorama file, the same number of times, interleaved (``bench/fair.py``), and each side's
PSNR against the scene (over its covered area) and views used are measured on an untimed run:

- panopipe: read the files, build the remap tables (the cache is cleared before every run: one shot, as Hugin
  does it), stitch (the default interpolation, ``auto``: bicubic at the rig's resolution), write the TIFF. A
  second side shows a shot of a batch from one rig (tables cached, frames in memory), which is panopipe's
  everyday case but not Hugin's;
- Hugin: the known camera poses in a .pto (a calibrated rig template, so no feature matching either), ``nona``
  (poly3) + ``enblend`` with ``--primary-seam-generator=nearest-feature-transform``, the seam generator its
  users pick for speed;
- OpenCV's feature-based ``cv2.Stitcher`` at the highest confidence threshold at which it succeeds (its result
  at the default threshold is reported beside it); its panorama is not on the scene's grid, so no PSNR.

Needs ``nona`` and ``enblend`` (``apt-get install -y hugin-tools enblend``); without them Hugin is reported
unavailable.

    python bench/bench_stitch.py [--quick] [--rig ring4|demo6|both] [--camera-width 1200] [--runs 7]
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

import fair
from panopipe.demo import demo_rig
from panopipe.errors import StepError
from panopipe.stitching import (
    CalibratedStitcher,
    OpenCVStitcher,
    RigProfile,
    StitchResult,
    output_size,
    psnr,
    render_views,
    synthetic_panorama,
)
from panopipe.stitching.calibrated import remap_tables

_HUGIN_LENS = {"rectilinear": 0, "fisheye": 3}  # f3: full-frame equidistant fisheye
OPENCV_DEFAULT = 1.0
OPENCV_CONFIDENCES = (OPENCV_DEFAULT, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def rigs(choice: str, width: int) -> list[RigProfile]:
    """``ring4``: 4 rectilinear cameras around the horizon (110°, 20° overlaps); ``demo6``: the demo rig."""
    demo = demo_rig(width, width * 3 // 4)
    ring = RigProfile.from_dict(
        {**demo.to_dict(), "name": "ring-4", "cameras": demo.to_dict()["cameras"][:4]}
    )
    return {"ring4": [ring], "demo6": [demo], "both": [ring, demo]}[choice]


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_rgb(path: Path, image: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def panopipe_from_files(
    rig: RigProfile, files: list[Path], output: Path, width: int, height: int
) -> StitchResult:
    """What a user waits for with one shot: files read, remap tables built, panorama stitched and written."""
    remap_tables.cache_clear()
    result = CalibratedStitcher(rig).stitch(
        [read_rgb(path) for path in files], {"width": width, "height": height}
    )
    write_rgb(output, result.panorama)
    return result


def write_pto(path: Path, rig: RigProfile, width: int, height: int, images: Sequence[str]) -> None:
    """A Hugin project with the rig's known poses: equirectangular output, cubic (poly3) interpolation."""
    lines = [f'p f2 w{width} h{height} v360 E0 R0 n"TIFF_m c:NONE r:CROP"', "m i0"]
    for camera, image in zip(rig.cameras, images, strict=True):
        lines.append(
            f"i w{camera.width} h{camera.height} f{_HUGIN_LENS[camera.lens]} v{camera.hfov_deg} "
            f"y{camera.yaw_deg} p{camera.pitch_deg} r{camera.roll_deg} a0 b0 c0 d0 e0 g0 t0 "
            f'Eev0 Er1 Eb1 Ra0 Rb0 Rc0 Rd0 Re0 Va1 Vb0 Vc0 Vd0 Vx0 Vy0 Vm5 n"{image}"'
        )
    path.write_text("\n".join(lines) + "\n")


def hugin_commands(
    pto: Path, workdir: Path, output: Path, width: int, height: int, count: int
) -> list[list[str]]:
    """``nona`` remaps each view to a cropped layer, ``enblend`` blends the layers (wrapping around 360°)."""
    remapped = [str(workdir / f"remapped_{i:04d}.tif") for i in range(count)]
    return [
        ["nona", "-m", "TIFF_m", "-o", str(workdir / "remapped_"), str(pto)],
        [
            "enblend",
            "-w",
            "--primary-seam-generator=nearest-feature-transform",
            f"-f{width}x{height}",
            "-o",
            str(output),
            *remapped,
        ],
    ]


def read_hugin_output(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB), image[..., 3] > 0


def opencv_confidence(views: list[np.ndarray]) -> tuple[float | None, dict[float, str]]:
    """The highest confidence threshold at which OpenCV's stitcher keeps every view (else the one keeping the
    most), and what each threshold tried gave."""
    outcomes: dict[float, str] = {}
    kept: dict[float, int] = {}
    for confidence in OPENCV_CONFIDENCES:
        try:
            kept[confidence] = OpenCVStitcher().stitch(views, {"confidence_threshold": confidence}).views_used
        except StepError:
            outcomes[confidence] = "failed"
            continue
        outcomes[confidence] = f"kept {kept[confidence]}/{len(views)} views"
        if kept[confidence] == len(views):
            break
    best = max(kept, key=lambda c: (kept[c], c), default=None)
    return best, outcomes


def bench_rig(report: fair.Report, rig: RigProfile, workdir: Path) -> None:
    width, height = output_size(rig)
    scene = synthetic_panorama(width, height, seed=0)
    views = render_views(scene, rig)
    names = [f"view{i}.tif" for i in range(len(views))]
    files = [workdir / name for name in names]
    for path, view in zip(files, views, strict=True):
        write_rgb(path, view)
    sizes = ", ".join(sorted({f"{c.width}x{c.height} {c.lens} {c.hfov_deg:g}°" for c in rig.cameras}))
    title = f"stitch, rig {rig.name}: {len(views)} views ({sizes}) -> {width}x{height}"
    notes: list[str] = []
    output = workdir / "panopipe.tif"

    result = panopipe_from_files(rig, files, output, width, height)
    notes.append(
        f"panopipe: {psnr(read_rgb(output), scene, result.coverage):.2f} dB, {result.views_used}/{len(views)} views"
    )
    cached = CalibratedStitcher(rig)
    params = {"width": width, "height": height}

    def one_shot() -> None:
        panopipe_from_files(rig, files, output, width, height)

    def batch_shot() -> None:
        cached.stitch(views, params)

    sides: dict[str, fair.Side] = {"panopipe, files in and out, tables built": one_shot}
    if shutil.which("nona") and shutil.which("enblend"):
        pto, hugin_output = workdir / "rig.pto", workdir / "hugin.tif"
        write_pto(pto, rig, width, height, names)
        commands = hugin_commands(pto, workdir, hugin_output, width, height, len(views))

        def hugin() -> None:
            for command in commands:
                subprocess.run(command, cwd=workdir, check=True, capture_output=True)

        hugin()
        panorama, coverage = read_hugin_output(hugin_output)
        notes.append(f"Hugin: {psnr(panorama, scene, coverage):.2f} dB, {len(views)}/{len(views)} views")
        sides["Hugin nona + enblend (NFT seams)"] = hugin
    else:
        report.unavailable("Hugin", "nona or enblend not installed: apt-get install -y hugin-tools enblend")
    confidence, outcomes = opencv_confidence(views)
    notes.append(
        "OpenCV cv2.Stitcher: "
        + "; ".join(f"confidence {c:g}: {outcome}" for c, outcome in outcomes.items())
        + " (panorama not on the scene's grid: no PSNR)"
    )
    if confidence is not None:
        options = {"confidence_threshold": confidence}

        def opencv() -> None:
            write_rgb(
                workdir / "opencv.tif",
                OpenCVStitcher().stitch([read_rgb(p) for p in files], options).panorama,
            )

        sides[f"OpenCV Stitcher, files in and out, confidence {confidence:g}"] = opencv
    sides["panopipe, batch shot (tables cached, in memory)"] = batch_shot
    report.compare(sides, title=title, unit="shots", notes=notes)


def main(argv: Sequence[str] | None = None) -> None:
    args = fair.parse_args(
        __doc__,
        {"camera-width": (1200, 600)},
        argv,
        lambda parser: parser.add_argument("--rig", choices=("ring4", "demo6", "both")),
    )
    with fair.report(args, "stitch") as report:
        report.note(f"numpy {np.__version__}, opencv {cv2.__version__}, OpenCV threads {cv2.getNumThreads()}")
        for rig in rigs(args.rig or ("ring4" if args.quick else "both"), args.camera_width):
            with tempfile.TemporaryDirectory(prefix="bench-stitch-") as tmp:
                bench_rig(report, rig, Path(tmp))


if __name__ == "__main__":
    main()
