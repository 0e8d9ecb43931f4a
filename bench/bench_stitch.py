"""Benchmark: panopipe's calibrated rig stitcher against Hugin (nona + enblend) and OpenCV's stitcher.

Renders the views of a rig from the synthetic scene, stitches them with each tool in the same run, and prints
seconds per shot, PSNR against the scene over each tool's covered area, and views used. panopipe's time is
per shot with the remap tables already cached (as in a batch from one rig); its one-off table build is shown
separately. Hugin gets the known camera poses in a .pto (a calibrated rig template), so it does no feature
matching either; its time is the ``nona`` + ``enblend`` command chain. Needs ``nona`` and ``enblend``
(``apt-get install -y hugin-tools enblend``); without them those rows are skipped.

    python bench/bench_stitch.py                # both rigs, 5 panopipe runs, 3 Hugin runs
    python bench/bench_stitch.py --rig ring4 --hugin-runs 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from panopipe.errors import StepError
from panopipe.stitching import (
    CalibratedStitcher,
    RigProfile,
    StitchResult,
    demo_rig,
    output_size,
    psnr,
    render_views,
    synthetic_panorama,
)
from panopipe.stitching.calibrated import remap_tables
from panopipe.stitching.external import ExternalStitcher
from panopipe.stitching.opencv_stitcher import OpenCVStitcher

_HUGIN_LENS = {"rectilinear": 0, "fisheye": 3}  # f3: full-frame equidistant fisheye


@dataclass
class Row:
    tool: str
    seconds: float | None
    psnr_db: float | None
    views: str
    note: str = ""


def rigs(choice: str) -> list[RigProfile]:
    """``ring4``: 4 rectilinear 1200x900 cameras around the horizon (110°, 20° overlaps); ``demo6``: the demo rig."""
    demo = demo_rig(1200, 900)
    ring = RigProfile.from_dict(
        {**demo.to_dict(), "name": "ring-4", "cameras": demo.to_dict()["cameras"][:4]}
    )
    return {"ring4": [ring], "demo6": [demo], "both": [ring, demo]}[choice]


def median_time(run: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bench_panopipe(rig: RigProfile, views: list[np.ndarray], scene: np.ndarray, runs: int) -> list[Row]:
    height, width = scene.shape[:2]
    remap_tables.cache_clear()
    started = time.perf_counter()
    remap_tables(rig.cameras, width, height)
    build = time.perf_counter() - started
    stitcher, rows = CalibratedStitcher(rig), []
    for interpolation in ("cubic", "linear"):
        params = {"width": width, "height": height, "interpolation": interpolation}
        seconds, result = median_time(lambda params=params: stitcher.stitch(views, params), runs)
        assert isinstance(result, StitchResult)
        rows.append(
            Row(
                f"panopipe calibrated ({interpolation})",
                seconds,
                psnr(result.panorama, scene, result.coverage),
                f"{result.views_used}/{len(views)}",
                f"median of {runs}; tables built once in {build:.2f} s",
            )
        )
    return rows


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
        ["enblend", "-w", f"-f{width}x{height}", "-o", str(output), *remapped],
    ]


def read_hugin_output(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB), image[..., 3] > 0


def bench_hugin(rig: RigProfile, views: list[np.ndarray], scene: np.ndarray, runs: int) -> Row:
    height, width = scene.shape[:2]
    with tempfile.TemporaryDirectory(prefix="bench-hugin-") as tmp:
        workdir = Path(tmp)
        names = [f"view{i}.tif" for i in range(len(views))]
        for name, view in zip(names, views, strict=True):
            cv2.imwrite(str(workdir / name), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
        pto, output = workdir / "rig.pto", workdir / "pano.tif"
        write_pto(pto, rig, width, height, names)
        commands = hugin_commands(pto, workdir, output, width, height, len(views))

        def chain() -> None:
            for command in commands:
                subprocess.run(command, cwd=workdir, check=True, capture_output=True)

        seconds, _ = median_time(chain, runs)
        panorama, coverage = read_hugin_output(output)
    return Row(
        "Hugin nona + enblend",
        seconds,
        psnr(panorama, scene, coverage),
        f"{len(views)}/{len(views)}",
        f"median of {runs}; known poses in a .pto, poly3",
    )


def bench_hugin_external(rig: RigProfile, views: list[np.ndarray], scene: np.ndarray) -> Row:
    """The same Hugin chain run through panopipe's ExternalStitcher (frames handed over as TIFF files)."""
    height, width = scene.shape[:2]
    with tempfile.TemporaryDirectory(prefix="bench-hugin-ext-") as tmp:
        pto, script = Path(tmp) / "rig.pto", Path(tmp) / "hugin.sh"
        write_pto(pto, rig, width, height, [f"view{i}.tif" for i in range(len(views))])
        script.write_text(
            "set -e\nworkdir=$1; output=$2; shift 2\n"
            f'nona -m TIFF_m -o "$workdir/remapped_" {pto} "$@"\n'
            f'enblend -w -f{width}x{height} -o "$output" "$workdir"/remapped_*.tif\n'
        )
        params = {
            "command": f"bash {script} {{workdir}} {{output}} {{inputs}}",
            "input_format": "tif",
            "output_name": "pano.tif",
            "timeout_s": 600,
        }
        seconds, result = median_time(lambda: ExternalStitcher().stitch(views, params), 1)
    assert isinstance(result, StitchResult)
    return Row(
        "Hugin via ExternalStitcher",
        seconds,
        psnr(result.panorama, scene, result.coverage),
        f"{result.views_used}/{len(views)}",
        "1 run; includes writing the frames",
    )


def bench_opencv(views: list[np.ndarray], confidence: float) -> Row:
    tool = f"OpenCV cv2.Stitcher (conf {confidence:g})"
    started = time.perf_counter()
    try:
        result = OpenCVStitcher().stitch(views, {"confidence_threshold": confidence})
    except StepError as error:
        return Row(tool, time.perf_counter() - started, None, f"0/{len(views)}", str(error))
    return Row(
        tool,
        time.perf_counter() - started,
        None,
        f"{result.views_used}/{len(views)}",
        f"1 run; feature-based, {result.panorama.shape[1]}x{result.panorama.shape[0]} not on the scene's grid",
    )


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"{'tool':<32} {'s/shot':>8} {'PSNR dB':>8} {'views':>6}  note")
    for row in rows:
        seconds = f"{row.seconds:8.3f}" if row.seconds is not None else f"{'-':>8}"
        quality = f"{row.psnr_db:8.2f}" if row.psnr_db is not None else f"{'n/a':>8}"
        print(f"{row.tool:<32} {seconds} {quality} {row.views:>6}  {row.note}")
    panopipe = next(row for row in rows if row.tool.startswith("panopipe"))
    hugin = next((row for row in rows if row.tool.startswith("Hugin nona")), None)
    if hugin and hugin.seconds and panopipe.seconds:
        print(f"Hugin s / panopipe s ({panopipe.tool}): {hugin.seconds / panopipe.seconds:.1f}x")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rig", choices=("ring4", "demo6", "both"), default="both")
    parser.add_argument("--runs", type=int, default=5, help="panopipe runs per setting (median)")
    parser.add_argument("--hugin-runs", type=int, default=3, help="Hugin runs (median)")
    args = parser.parse_args(argv)
    has_hugin = shutil.which("nona") is not None and shutil.which("enblend") is not None
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, opencv {cv2.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, OpenCV threads {cv2.getNumThreads()}"
    )
    for rig in rigs(args.rig):
        width, height = output_size(rig)
        scene = synthetic_panorama(width, height, seed=0)
        views = render_views(scene, rig)
        rows = bench_panopipe(rig, views, scene, args.runs)
        if has_hugin:
            rows += [bench_hugin(rig, views, scene, args.hugin_runs), bench_hugin_external(rig, views, scene)]
        else:
            rows.append(Row("Hugin nona + enblend", None, None, "-", "not installed"))
        rows += [bench_opencv(views, 1.0), bench_opencv(views, 0.3)]
        sizes = ", ".join(sorted({f"{c.width}x{c.height} {c.lens} {c.hfov_deg:g}°" for c in rig.cameras}))
        print_table(f"rig {rig.name}: {len(views)} views ({sizes}) -> {width}x{height} equirectangular", rows)


if __name__ == "__main__":
    main()
