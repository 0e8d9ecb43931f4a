"""Benchmark: read EXIF + XMP GPano metadata from 1,000 JPEGs of 4096x2048.

Compares ``panopipe.metadata.read_metadata`` (one process, and all cores) with ``exiftool -json -n -fast2``
over the folder and with Pillow (``Image.open(p).getexif()`` with its Exif and GPS IFDs, plus the XMP
packet parsed with ElementTree) in one process. The files are generated once under bench/out/ from one
encoded image, each with its own EXIF and XMP. The page cache is warmed before timing. In-process figures
are the best of 7 runs; the one-process reader is also timed in CPU time, which other work on a shared
machine changes much less than the elapsed time.

    python bench/bench_metadata_read.py [--files 1000]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from panopipe.metadata import read_metadata

OUT = Path(__file__).parent / "out" / "metadata_4096x2048"
WIDTH, HEIGHT = 4096, 2048


def base_jpeg() -> bytes:
    """A 4096x2048 gradient with mild noise, encoded once at quality 85."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, WIDTH, dtype=np.float32)
    y = np.linspace(0, 255, HEIGHT, dtype=np.float32)[:, None]
    channels = [x + 0 * y, y + 0 * x, (x[::-1] + y) / 2]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=85)
    return out.getvalue()


def app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return (
        IFDRational(degrees, 1),
        IFDRational(minutes, 1),
        IFDRational(round(value * 3_600_000) % 60_000, 1000),
    )


def metadata_segments(rng: random.Random, index: int) -> bytes:
    """EXIF (camera, times, GPS) and XMP GPano APP1 segments as a 360° camera writes them."""
    taken = datetime(2024, 5, 1, 8) + timedelta(seconds=2 * index)
    latitude, longitude = 52.0 + rng.random() / 100, -1.5 - rng.random() / 100
    exif = Image.Exif()
    exif.update({0x010F: "Insta360", 0x0110: "X3", 0x0112: 1, 0x0131: "Insta360 Studio 2024"})
    exif.get_ifd(0x8769).update(
        {
            0x9003: taken.strftime("%Y:%m:%d %H:%M:%S"),
            0x9291: f"{rng.randrange(1000):03}",
            0x9011: "+01:00",
            0xA431: "IXSE12345678",
            0x829A: IFDRational(1, 500),
            0x8827: 100,
        }
    )
    utc = taken - timedelta(hours=1)
    exif.get_ifd(0x8825).update(
        {
            0: b"\x02\x03\x00\x00",
            1: "N",
            2: dms(latitude),
            3: "W",
            4: dms(-longitude),
            5: 0,
            6: IFDRational(round(rng.uniform(50, 90) * 100), 100),
            7: (IFDRational(utc.hour, 1), IFDRational(utc.minute, 1), IFDRational(utc.second, 1)),
            17: IFDRational(round(rng.uniform(0, 360) * 100), 100),
            29: utc.strftime("%Y:%m:%d"),
        }
    )
    xmp = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
        ' xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" GPano:ProjectionType="equirectangular"'
        f' GPano:UsePanoramaViewer="True" GPano:PoseHeadingDegrees="{rng.uniform(0, 360):.1f}"'
        ' GPano:PosePitchDegrees="0.0" GPano:PoseRollDegrees="0.0"'
        f' GPano:FullPanoWidthPixels="{WIDTH}" GPano:FullPanoHeightPixels="{HEIGHT}"'
        f' GPano:CroppedAreaImageWidthPixels="{WIDTH}" GPano:CroppedAreaImageHeightPixels="{HEIGHT}"'
        ' GPano:CroppedAreaLeftPixels="0" GPano:CroppedAreaTopPixels="0"'
        ' GPano:StitchingSoftware="Insta360 Studio"/></rdf:RDF></x:xmpmeta>'
        + " " * 2048
        + '<?xpacket end="w"?>'
    )
    return app1(exif.tobytes()) + app1(b"http://ns.adobe.com/xap/1.0/\x00" + xmp.encode())


def make_files(count: int) -> list[Path]:
    paths = [OUT / f"pano_{index:05}.jpg" for index in range(count)]
    missing = [path for path in paths if not path.exists()]
    if missing:
        print(f"generating {len(missing)} files in {OUT} ...")
        OUT.mkdir(parents=True, exist_ok=True)
        image = base_jpeg()
        rng = random.Random(1)
        for index, path in enumerate(paths):
            segments = metadata_segments(rng, index)
            if path in missing:
                path.write_bytes(image[:2] + segments + image[2:])
    return paths


def read_all(paths: list[Path]) -> int:
    return sum(read_metadata(path).gps_latitude is not None for path in paths)


def read_with_pillow(paths: list[Path]) -> int:
    found = 0
    for path in paths:
        with Image.open(path) as image:
            exif = image.getexif()
            exif.get_ifd(0x8769)
            gps = exif.get_ifd(0x8825)
            root = ElementTree.fromstring(image.info["xmp"])
            found += bool(gps) and root is not None
    return found


def read_all_cores(paths: list[Path], workers: int, pool: ProcessPoolExecutor) -> int:
    size = -(-len(paths) // (4 * workers))  # four chunks per worker, so that none idles at the end
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    return sum(pool.map(read_all, chunks))


def rate(
    count: int, run: Callable[[], object], repeat: int = 7, clock: Callable[[], float] = time.perf_counter
) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = clock()
        run()
        best = min(best, clock() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    paths = make_files(args.files)
    for path in paths:  # warm the page cache
        path.read_bytes()
    assert read_all(paths) == len(paths)
    workers = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    with ProcessPoolExecutor(workers) as pool:
        pool.submit(read_all, paths[:1]).result()
        rates = {
            "panopipe, 1 process": rate(len(paths), lambda: read_all(paths)),
            "panopipe, 1 process, CPU time": rate(
                len(paths), lambda: read_all(paths), clock=time.process_time
            ),
            f"panopipe, {workers} processes": rate(len(paths), lambda: read_all_cores(paths, workers, pool)),
        }
    exiftool = ["exiftool", "-json", "-n", "-fast2", "-q", str(OUT)]
    rates["exiftool -json -n -fast2"] = rate(
        len(paths), lambda: subprocess.run(exiftool, check=True, capture_output=True), repeat=1
    )
    rates["Pillow getexif + XMP, 1 process"] = rate(len(paths), lambda: read_with_pillow(paths))
    ours = rates["panopipe, 1 process"]
    print(
        f"{len(paths)} JPEGs of {WIDTH}x{HEIGHT}, {os.path.getsize(paths[0]) / 1e6:.1f} MB each, EXIF + XMP GPano"
    )
    print(
        f"{workers} cores, 1-minute load average {load_before:.2f} before and {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'reader':<34} {'files/s':>10} {'panopipe (1 process) / reader':>30}")
    for name, value in rates.items():
        ratio = "" if name.startswith("panopipe") else f"{ours / value:.1f}x"
        print(f"{name:<34} {value:>10,.0f} {ratio:>30}")


if __name__ == "__main__":
    main()
