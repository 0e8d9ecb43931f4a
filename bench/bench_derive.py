"""Benchmark: 512 px thumbnails and 2048 px previews of 4096x2048 panoramas (about 2 MB each), in images
per second, and their quality; each alone, then both of each panorama (``derive``'s default job).

Compares, on the same files:

1. panopipe's ``derive`` step (GPS/time/GPano metadata written into each output as in a real run), run as
   jobs by the local executor over all cores: the JPEG decoder scales by 1/4 (thumbnails) or not at all
   (previews) in the DCT domain, then a Lanczos-3 filter shrinks the luma by the factor 2 left (what libvips
   does to every channel) and an area average the chroma; a job making both decodes once and shrinks the
   thumbnail from the preview's pixels;
2. ``vipsthumbnail -s 512`` (``-s 2048``) in one process per core, the files split between them (the
   reference: a user with a machine to fill runs it so); for both, the previews first, then the thumbnails
   from the previews (the quicker way, rather than decoding every panorama twice);
3. ``vipsthumbnail`` over all files in one process (libvips threads internally, shrink-on-load);
4. the floor: derive's decode alone (``decode_for_sizes``: the file read and libjpeg-turbo's DCT-scaled
   decode) in one process per core, nothing shrunk, encoded or written. Every side pays this decode, so its
   ratio says how much of panopipe's time is left to anything else.

The methods run interleaved on the same files (``bench/fair.py``), each into a new empty folder; panopipe's
worker processes are started by the warm-up run, as in a long ``panopipe run``. Quality, measured on the
warm-up's output outside the clock: SSIM (11x11 Gaussian window, sigma 1.5, on luma, as Wang et al. 2004)
of each output against a Lanczos downscale of the fully decoded image, mean and worst over the files.
The goal is 1.5x vipsthumbnail one process per core at an SSIM not below its. Both sides encode at quality
85 with 4:2:0 chroma and no Huffman optimisation (libvips' and OpenCV's defaults at that quality).

    python bench/bench_derive.py [--quick] [--files 64] [--previews 16] [--runs 7] [--json out.json]

``--previews`` is also the number of panoramas of the default job's comparison.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import fair
from panopipe.catalog.types import new_id
from panopipe.executors import LocalExecutor
from panopipe.executors.local import start_worker_process
from panopipe.steps import JobSpec
from panopipe.steps.derive import decode_for_sizes
from panopipe.stitching import synthetic_panorama

OUT = Path(__file__).parent / "out" / "derive_4096x2048"
SIZES = {"thumbnail": 512, "preview": 2048}
METADATA = {
    "captured_at": "2024-05-01T10:00:01+02:00",
    "utc_offset_minutes": 120,
    "gps_latitude": 48.8584,
    "gps_longitude": 2.2945,
    "gps_altitude": 35.0,
    "gps_img_direction": 90.0,
    "make": "Bench",
    "model": "Rig",
    "artist": None,
    "copyright": None,
    "image_description": None,
    "panopipe": {"project": "bench"},
}
"""What ``derive`` writes into each thumbnail (``expected_metadata``'s JSON form); vipsthumbnail writes none."""


def make_files(count: int) -> list[Path]:
    """``count`` different 4096x2048 JPEGs at quality 92, made once under bench/out/."""
    OUT.mkdir(parents=True, exist_ok=True)
    base = synthetic_panorama(4096, 2048, seed=3).astype(np.int16)
    rng = np.random.default_rng(0)
    files = []
    for i in range(count):
        path = OUT / f"pano_{i:04d}.jpg"
        if not path.exists():
            pixels = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(np.roll(pixels, i * 61, axis=1)).save(buffer, "JPEG", quality=92)
            path.write_bytes(buffer.getvalue())
        files.append(path)
    return files


def panopipe_derive(files: list[Path], out: Path, executor: LocalExecutor, outputs: Sequence[str]) -> None:
    specs = [
        JobSpec(
            new_id(),
            "derive",
            f"image:{path.stem}",
            "bench",
            {
                "params": {**SIZES, "quality": 85},
                "inputs": [str(path)],
                "outputs": {output: str(out / output / f"{path.stem}.jpg") for output in outputs},
                "metadata": METADATA,
            },
        )
        for path in files
    ]
    run_jobs(executor, specs)


def run_jobs(executor: LocalExecutor, specs: list[JobSpec]) -> None:
    """Run ``specs`` on ``executor``, polled as the runner polls (pipeline/runner.py): the jobs that finished,
    waiting while none did; every one must succeed."""
    pending, failed = dict.fromkeys(executor.submit(specs)), []
    while pending:
        states = executor.finished(pending)
        for state in states:
            del pending[state.handle]
            if state.status != "succeeded":
                failed.append(state.outcome.error if state.outcome else state.status)
        if not states:
            executor.wait(pending)
    assert not failed, failed[:3]


def decode_alone(files: list[Path], pool: ProcessPoolExecutor, outputs: Sequence[str]) -> None:
    """Only what every side pays: each file read and decoded as ``derive`` decodes it, in ``pool``."""
    list(pool.map(partial(_decode_file, sizes=[SIZES[output] for output in outputs]), files))


def _decode_file(path: Path, sizes: list[int]) -> None:
    decode_for_sizes(path.read_bytes(), sizes)


def vips_one_process(files: list[Path], out: Path, outputs: Sequence[str]) -> None:
    for sources, output in _vips_passes(files, out, outputs):
        subprocess.run(_vipsthumbnail(sources, out, output), check=True)


def vips_per_core(files: list[Path], out: Path, outputs: Sequence[str]) -> None:
    cores = os.cpu_count() or 1
    for sources, output in _vips_passes(files, out, outputs):
        processes = [subprocess.Popen(_vipsthumbnail(sources[i::cores], out, output)) for i in range(cores)]
        assert all(process.wait() == 0 for process in processes)


def _vips_passes(files: list[Path], out: Path, outputs: Sequence[str]) -> list[tuple[list[Path], str]]:
    """vipsthumbnail's runs, largest output first, each smaller one from the previous one's images."""
    ordered = sorted(outputs, key=SIZES.__getitem__, reverse=True)
    sources = [files] + [[out / larger / f"{path.stem}.jpg" for path in files] for larger in ordered[:-1]]
    return list(zip(sources, ordered, strict=True))


def _vipsthumbnail(files: list[Path], out: Path, output: str) -> list[str]:
    return ["vipsthumbnail", "-s", str(SIZES[output]), "-o", f"{out}/{output}/%s.jpg[Q=85]", *map(str, files)]


def luma(path: Path) -> np.ndarray:
    """The BT.601 luma of an image file, as floats."""
    with Image.open(path) as image:
        return rgb_luma(image.convert("RGB"))


def rgb_luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two luma images (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
    range 255), over the pixels whose window lies inside the image."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index[5:-5, 5:-5].mean())


def references(files: list[Path], size: int) -> dict[str, np.ndarray]:
    """Each file's luma after a Lanczos downscale of its full decode to ``size`` x ``size // 2``, by file stem."""
    lumas = {}
    for path in files:
        with Image.open(path) as image:
            lumas[path.stem] = rgb_luma(
                image.convert("RGB").resize((size, size // 2), Image.Resampling.LANCZOS)
            )
    return lumas


def main() -> None:
    args = fair.parse_args(__doc__, {"files": (64, 16), "previews": (16, 4)})
    files = make_files(max(args.files, args.previews))
    megabytes = sum(path.stat().st_size for path in files) / len(files) / 1e6
    executor = LocalExecutor()
    # the floor's processes start as the executor's do, and run each file as a job
    floor = ProcessPoolExecutor(fair.CORES, initializer=start_worker_process)
    with fair.report(args, "derive") as report:
        report.note(f"{len(files)} files of 4096x2048, {megabytes:.1f} MB each, {fair.CORES} cores")
        if not shutil.which("vipsthumbnail"):
            report.unavailable("vipsthumbnail", "not installed: apt-get install -y libvips-tools")
        try:
            for outputs, count in (
                (("thumbnail",), args.files),
                (("preview",), args.previews),
                (("thumbnail", "preview"), args.previews),
            ):
                compare(report, executor, floor, outputs, files[:count])
        finally:
            executor.close()
            floor.shutdown()


def compare(
    report: fair.Report,
    executor: LocalExecutor,
    floor: ProcessPoolExecutor,
    outputs: Sequence[str],
    files: list[Path],
) -> None:
    """One comparison: ``outputs`` (thumbnail, preview or both) of each of ``files``, on every side; SSIM
    noted."""
    methods: dict[str, Callable[[list[Path], Path], None]] = {
        f"panopipe derive ({fair.CORES} worker processes)": lambda f, o: panopipe_derive(
            f, o, executor, outputs
        ),
        f"vipsthumbnail ({fair.CORES} processes, one per core)": lambda f, o: vips_per_core(f, o, outputs),
        "vipsthumbnail (one process)": lambda f, o: vips_one_process(f, o, outputs),
    }
    if not shutil.which("vipsthumbnail"):
        methods = dict(list(methods.items())[:1])
    floor_side = f"the floor: decode alone ({fair.CORES} processes)"
    methods[floor_side] = lambda f, o: decode_alone(f, floor, outputs)
    reference = {output: references(files, SIZES[output]) for output in outputs}
    quality: dict[tuple[str, str], list[float]] = {}

    def timed(name: str) -> float:
        out = Path(tempfile.mkdtemp(prefix="panopipe-bench-derive-"))
        try:
            for output in outputs:
                (out / output).mkdir()
            started = time.perf_counter()
            methods[name](files, out)
            seconds = time.perf_counter() - started
            if name == floor_side:  # nothing written to check
                return seconds
            for output in outputs:
                size = SIZES[output]
                made = sorted(path.stem for path in (out / output).iterdir())
                assert made == sorted(path.stem for path in files), (output, made[:3])
                sizes = {Image.open(path).size for path in (out / output).iterdir()}
                assert sizes == {(size, size // 2)}, sizes
                if (name, output) not in quality:
                    quality[name, output] = [
                        ssim(reference[output][p.stem], luma(out / output / f"{p.stem}.jpg")) for p in files
                    ]
            return seconds
        finally:
            shutil.rmtree(out)

    what = " and ".join(f"{SIZES[output]} px {output}s" for output in outputs)
    report.compare(
        {name: lambda name=name: timed(name) for name in methods},
        title=f"{what} of 4096x2048 JPEGs, all cores",
        unit="panoramas" if len(outputs) > 1 else f"{outputs[0]}s",
        count=len(files),
        goal="1.5x vipsthumbnail one process per core, SSIM not below its",
    )
    for (name, output), values in quality.items():
        report.note(
            f"{output}s: SSIM against a Lanczos downscale of the full decode, {name}: "
            f"mean {np.mean(values):.4f}, worst {min(values):.4f}"
        )


if __name__ == "__main__":
    main()
