"""Benchmark: a nadir logo on 4096x2048 panoramas (about 2 MB each), in panoramas per second, all cores.

Compares, on the same files and the same cap (a logo 20° around the nadir on a dark disc):

1. panopipe's ``nadir`` step, run as jobs by the local executor over all cores: each panorama decoded,
   its bottom rows covered (the down view's maps made once per worker), encoded at quality 92 with the
   source's metadata segments carried over;
2. ``vips composite2`` (libvips' command line) of the same cap, prepared once as an equirectangular band
   with transparency (what a user without panopipe prepares in an image editor), over each panorama at its
   row and saved at quality 92 (libvips keeps the metadata too): one command per file, as a shell loop
   runs it, one loop per core.

Both sides read and write every file; each side's one-time preparation is outside the timed runs (libvips'
band, made before them; panopipe's maps, made by its workers in the warm-up and kept, as in a run of any
length). The outputs are compared outside the clock (PSNR of panopipe's against libvips', which differ only by
the encoders' rounding). The methods run interleaved on the same
files (``bench/fair.py``), each into a new empty folder.

    python bench/bench_nadir.py [--quick] [--files 32] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

import fair
from bench_derive import make_files, run_jobs
from panopipe.catalog.types import new_id
from panopipe.executors import LocalExecutor
from panopipe.steps import JobSpec
from panopipe.stitching.nadir import cap_geometry, cover_nadir, parse_fill

WIDTH, HEIGHT = 4096, 2048
ANGLE = 20.0
FILL = "#202020"
OUT = Path(__file__).parent / "out" / "nadir"


def make_logo() -> Path:
    """A 512x512 PNG logo with transparency: a ring and a bar on a transparent ground."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "logo.png"
    logo = np.zeros((512, 512, 4), np.uint8)
    cv2.circle(logo, (256, 256), 200, (40, 160, 240, 255), 40)
    cv2.rectangle(logo, (96, 232), (416, 280), (255, 255, 255, 255), -1)
    cv2.imwrite(str(path), logo)
    return path


def make_band(logo: Path) -> tuple[Path, int]:
    """The cap as an equirectangular band with transparency (what panopipe paints over the rows from its
    top row), for ``vips composite2``; and that top row."""
    rgba = cv2.imread(str(logo), cv2.IMREAD_UNCHANGED)
    black = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    white = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    for canvas in (black, white):
        cover_nadir(canvas, ANGLE, parse_fill(FILL), rgba)
    top = cap_geometry(WIDTH, HEIGHT, ANGLE).top
    on_black, on_white = black[top:].astype(np.float64), white[top:].astype(np.float64)
    weight = 1 - (on_white - on_black).mean(axis=2, keepdims=True) / 255  # black = cap * w, white adds 1 - w
    colour = np.where(weight > 0, on_black / np.maximum(weight, 1e-6), 0)
    band = np.dstack([np.clip(colour, 0, 255), weight * 255]).round().astype(np.uint8)
    path = OUT / "band.png"
    cv2.imwrite(str(path), band)
    return path, top


def panopipe_nadir(files: list[Path], out: Path, executor: LocalExecutor, logo: Path) -> None:
    params = {
        "angle_deg": ANGLE,
        "fill": FILL,
        "logo": str(logo),
        "logo_sha256": hashlib.sha256(logo.read_bytes()).hexdigest(),
        "quality": 92,
    }
    specs = [
        JobSpec(
            new_id(),
            "nadir",
            f"image:{path.stem}",
            "bench",
            {"params": params, "inputs": [str(path)], "outputs": {"image": str(out / f"{path.stem}.jpg")}},
        )
        for path in files
    ]
    run_jobs(executor, specs)


def vips_per_core(files: list[Path], out: Path, band: Path, top: int) -> None:
    loop = f'for f; do vips composite2 "$f" {band} "{out}/$(basename "$f")[Q=92]" over --x 0 --y {top}; done'
    processes = [
        subprocess.Popen(["sh", "-c", loop, "sh", *map(str, files[i :: fair.CORES])])
        for i in range(fair.CORES)
    ]
    assert all(process.wait() == 0 for process in processes)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def main() -> None:
    args = fair.parse_args(__doc__, {"files": (32, 8)})
    files = make_files(args.files)
    logo = make_logo()
    band, top = make_band(logo)
    executor = LocalExecutor()
    outputs: dict[str, Path] = {}
    with fair.report(args, "nadir") as report:
        report.note(
            f"{len(files)} files of {WIDTH}x{HEIGHT}, a {ANGLE:g}° cap ({HEIGHT - top} rows), {fair.CORES} cores"
        )
        methods: dict[str, Callable[[Path], None]] = {
            f"panopipe nadir ({fair.CORES} worker processes)": lambda o: panopipe_nadir(
                files, o, executor, logo
            ),
        }
        if shutil.which("vips"):
            methods[f"vips composite2 ({fair.CORES} processes, one per core)"] = lambda o: vips_per_core(
                files, o, band, top
            )
        else:
            report.unavailable("vips composite2", "not installed: apt-get install -y libvips-tools")

        def timed(name: str) -> float:
            out = Path(tempfile.mkdtemp(prefix="panopipe-bench-nadir-"))
            started = time.perf_counter()
            methods[name](out)
            seconds = time.perf_counter() - started
            made = sorted(path.stem for path in out.iterdir())
            assert made == sorted(path.stem for path in files), made[:3]
            if name not in outputs:
                outputs[name] = out  # the warm-up's, compared below
            else:
                shutil.rmtree(out)
            return seconds

        try:
            report.compare(
                {name: lambda name=name: timed(name) for name in methods},
                title=f"a {ANGLE:g}° nadir logo on {WIDTH}x{HEIGHT} JPEGs, all cores",
                unit="panoramas",
                count=len(files),
            )
            if len(outputs) == 2:
                ours, theirs = outputs.values()
                values = [
                    psnr(cv2.imread(str(ours / path.name)), cv2.imread(str(theirs / path.name)))
                    for path in files
                ]
                worst = f"mean {np.mean(values):.1f} dB, worst {min(values):.1f} dB"
                report.note(f"PSNR of panopipe's output against libvips': {worst}")
        finally:
            executor.close()
            for out in outputs.values():
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
