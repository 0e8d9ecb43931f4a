"""Benchmark: 512 px thumbnails of 4096x2048 panoramas (about 2 MB each), in thumbnails per second.

Compares, on the same files:

1. panopipe's ``derive`` step (thumbnail only), run as jobs by the local executor over all cores: Pillow's
   ``draft()`` lets the JPEG decoder scale by 1/8 in the DCT domain, then a resize fits the exact size;
2. ``vipsthumbnail -s 512`` over all files in one process (libvips threads internally, shrink-on-load);
3. ``vipsthumbnail`` in one process per core, the files split between them.

The methods run interleaved on the same files (``bench/fair.py``), each into a new empty folder; the goal
(2x vipsthumbnail) is against one vipsthumbnail process per core, as a user with a machine to fill runs it.
panopipe's worker processes are started by the warm-up run, as in a long ``panopipe run``.

    python bench/bench_derive.py [--quick] [--files 64] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import fair
from panopipe.catalog.types import new_id
from panopipe.executors import LocalExecutor
from panopipe.executors.base import FINISHED
from panopipe.steps import JobSpec
from panopipe.stitching import synthetic_panorama

OUT = Path(__file__).parent / "out" / "derive_4096x2048"
SIZE = 512


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


def panopipe_derive(files: list[Path], out: Path, executor: LocalExecutor) -> None:
    specs = [
        JobSpec(
            new_id(),
            "derive",
            f"image:{path.stem}",
            "bench",
            {
                "params": {"thumbnail": SIZE, "preview": 0, "quality": 85},
                "inputs": [str(path)],
                "outputs": {"thumbnail": str(out / f"{path.stem}.jpg")},
            },
        )
        for path in files
    ]
    handles = executor.submit(specs)
    while True:
        states = executor.describe(handles)
        if all(state.status in FINISHED for state in states):
            break
        time.sleep(0.005)
    failed = [state.outcome.error for state in states if state.status != "succeeded" and state.outcome]
    assert not failed, failed[:3]


def vips_one_process(files: list[Path], out: Path) -> None:
    subprocess.run(
        ["vipsthumbnail", "-s", str(SIZE), "-o", f"{out}/%s.jpg[Q=85]", *map(str, files)], check=True
    )


def vips_per_core(files: list[Path], out: Path) -> None:
    cores = os.cpu_count() or 1
    processes = [
        subprocess.Popen(
            ["vipsthumbnail", "-s", str(SIZE), "-o", f"{out}/%s.jpg[Q=85]", *map(str, files[i::cores])]
        )
        for i in range(cores)
    ]
    assert all(process.wait() == 0 for process in processes)


def main() -> None:
    args = fair.parse_args(__doc__, {"files": (64, 16)})
    files = make_files(args.files)
    megabytes = sum(path.stat().st_size for path in files) / len(files) / 1e6
    executor = LocalExecutor()
    methods: dict[str, Callable[[list[Path], Path], None]] = {
        f"panopipe derive ({fair.CORES} worker processes)": lambda f, o: panopipe_derive(f, o, executor),
        f"vipsthumbnail ({fair.CORES} processes, one per core)": vips_per_core,
        "vipsthumbnail (one process)": vips_one_process,
    }

    def timed(method: Callable[[list[Path], Path], None]) -> float:
        out = Path(tempfile.mkdtemp(prefix="panopipe-bench-derive-"))
        try:
            started = time.perf_counter()
            method(files, out)
            seconds = time.perf_counter() - started
            sizes = {Image.open(p).size for p in out.iterdir()}
            assert sizes == {(SIZE, SIZE // 2)}, sizes
            return seconds
        finally:
            shutil.rmtree(out)

    with fair.report(args, "derive") as report:
        report.note(f"{len(files)} files of 4096x2048, {megabytes:.1f} MB each, {fair.CORES} cores")
        if not shutil.which("vipsthumbnail"):
            methods = dict(list(methods.items())[:1])
            report.unavailable("vipsthumbnail", "not installed: apt-get install -y libvips-tools")
        try:
            report.compare(
                {name: lambda method=method: timed(method) for name, method in methods.items()},
                title="512 px thumbnails of 4096x2048 JPEGs, all cores",
                unit="thumbnails",
                count=len(files),
                goal="2x vipsthumbnail one process per core",
            )
        finally:
            executor.close()


if __name__ == "__main__":
    main()
