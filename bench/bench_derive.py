"""Benchmark: 512 px thumbnails of 4096x2048 panoramas (about 2 MB each), in thumbnails per second.

Compares, on the same files:

1. panopipe's ``derive`` step (thumbnail only), run as jobs by the local executor over all cores: Pillow's
   ``draft()`` lets the JPEG decoder scale by 1/8 in the DCT domain, then a resize fits the exact size;
2. ``vipsthumbnail -s 512`` over all files in one process (libvips threads internally, shrink-on-load);
3. ``vipsthumbnail`` in one process per core, the files split between them.

Each method runs a few rounds, in turn; each one's fastest round counts. The goal is 2x vipsthumbnail.

    python bench/bench_derive.py [--files 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    files = make_files(args.files)
    megabytes = sum(path.stat().st_size for path in files) / len(files) / 1e6
    print(f"{len(files)} files of 4096x2048, {megabytes:.1f} MB each, {os.cpu_count()} cores")
    executor = LocalExecutor()
    panopipe_derive(files[:2], Path(tempfile.mkdtemp()), executor)  # start the workers
    methods: dict[str, Callable[[list[Path], Path], None]] = {
        "panopipe derive (all cores)": lambda f, o: panopipe_derive(f, o, executor),
        "vipsthumbnail (one process)": vips_one_process,
        "vipsthumbnail (one process per core)": vips_per_core,
    }
    best = dict.fromkeys(methods, float("inf"))
    try:
        for _ in range(args.rounds):
            for name, method in methods.items():
                out = Path(tempfile.mkdtemp(prefix="panopipe-bench-derive-"))
                started = time.perf_counter()
                method(files, out)
                best[name] = min(best[name], time.perf_counter() - started)
                sizes = {Image.open(p).size for p in out.iterdir()}
                assert sizes == {(SIZE, SIZE // 2)}, sizes
                shutil.rmtree(out)
    finally:
        executor.close()
    ours = len(files) / best["panopipe derive (all cores)"]
    print(f"\n{'method':<40}{'thumbnails/s':>14}{'panopipe/this':>15}")
    for name, seconds in best.items():
        rate = len(files) / seconds
        ratio = "" if name.startswith("panopipe") else f"{ours / rate:.2f}x"
        print(f"{name:<40}{rate:>14.1f}{ratio:>15}")


if __name__ == "__main__":
    main()
