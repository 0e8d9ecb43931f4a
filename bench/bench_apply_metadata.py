"""Benchmark: write capture metadata into JPEGs of 4096x2048 (about 2 MB each).

Compares, in files per second:

1. the bound: read each file and write it back atomically, with the durability panopipe uses
   (temporary file in the same folder, ``fsync`` of the file, ``os.replace``; the folder is not fsynced),
   through ``panopipe.storage.write_atomic``;
2. ``panopipe.metadata.writer.apply_metadata_file`` with different values per file, in place;
3. ExifTool writing the same tags (different values per file) in ONE process (``exiftool -@ argsfile`` with
   ``-execute`` per file, ``-overwrite_original``). ExifTool does not fsync, so it does less work.

The files are generated once under bench/out/ from one encoded image, each with its own camera-like EXIF
(IFD0, ExifIFD with a 2 KB MakerNote, GPS). Every run works on fresh copies, synced to disk and in the
page cache (made before the clock starts); the methods run interleaved (``bench/fair.py``).

    python bench/bench_apply_metadata.py [--quick] [--files 200] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

import fair
from panopipe.metadata.writer import GPano, MetadataUpdate, apply_metadata_file
from panopipe.storage import write_atomic

OUT = Path(__file__).parent / "out" / "apply_metadata_4096x2048"
WIDTH, HEIGHT = 4096, 2048
START = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


def base_jpeg() -> bytes:
    """A 4096x2048 gradient with mild noise, encoded once at quality 92 (about 2 MB)."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, WIDTH, dtype=np.float32)
    y = np.linspace(0, 255, HEIGHT, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x[::-1] + y) / 2], axis=-1) + rng.normal(
        0, 6, (HEIGHT, WIDTH, 3)
    )
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=92)
    return out.getvalue()


def camera_exif(index: int) -> bytes:
    """A camera-like EXIF APP1 segment: IFD0, ExifIFD with a maker note, GPS."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "BenchCam", "BC-360", "firmware 1.0"
    exif[0x0112], exif[0x011A], exif[0x011B], exif[0x0128] = 1, 72.0, 72.0, 2
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = (START + timedelta(seconds=index)).strftime("%Y:%m:%d %H:%M:%S")
    sub[0x829A], sub[0x829D], sub[0x8827], sub[0x9000] = 0.002, 4.0, 100, b"0232"
    sub[0x927C] = b"BENCHNOTE\x00" + bytes(range(256)) * 8  # an opaque maker note: forces the append layout
    gps = exif.get_ifd(0x8825)
    gps[0x0000], gps[0x0001], gps[0x0003] = b"\x02\x03\x00\x00", "N", "E"
    gps[0x0002], gps[0x0004] = (48.0, 51.0, 24.0), (2.0, 21.0, 3.0)
    payload = exif.tobytes()  # starts with the Exif header
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def generate(count: int) -> list[Path]:
    """``count`` files under OUT, generated once and reused."""
    OUT.mkdir(parents=True, exist_ok=True)
    paths = [OUT / f"frame_{i:05d}.jpg" for i in range(count)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        base = base_jpeg()
        for path in missing:
            index = int(path.stem.split("_")[1])
            path.write_bytes(base[:2] + camera_exif(index) + base[2:])
    return paths


def update_for(index: int) -> MetadataUpdate:
    return MetadataUpdate(
        captured_at=START + timedelta(seconds=index, milliseconds=index % 1000),
        utc_offset_minutes=120,
        gps_latitude=48.85 + index * 1e-5,
        gps_longitude=2.35 + index * 1e-5,
        gps_altitude=35.0 + index * 0.01,
        gps_img_direction=(index * 7.5) % 360,
        gps_h_positioning_error=0.02,
        make="PanoCam",
        model="P-1",
        artist="bench",
        gpano=GPano(WIDTH, HEIGHT, pose_heading_degrees=(index * 7.5) % 360),
        panopipe={"project": "bench", "reel": "A", "frame": index},
    )


def exiftool_args(index: int, path: Path) -> list[str]:
    """The ExifTool arguments that write what ``update_for(index)`` writes."""
    update = update_for(index)
    assert update.captured_at and update.gps_latitude and update.gps_longitude and update.gpano
    local = update.captured_at + timedelta(minutes=120)
    return [
        "-q",  # per -execute group: no "1 image files updated" line, no warning about the fake maker note
        "-q",
        f"-ExifIFD:DateTimeOriginal={local:%Y:%m:%d %H:%M:%S}",
        f"-ExifIFD:SubSecTimeOriginal={local.microsecond // 1000:03d}",
        "-ExifIFD:OffsetTimeOriginal=+02:00",
        f"-GPSLatitude={update.gps_latitude}",
        "-GPSLatitudeRef=N",
        f"-GPSLongitude={update.gps_longitude}",
        "-GPSLongitudeRef=E",
        f"-GPSAltitude={update.gps_altitude}",
        "-GPSAltitudeRef=0",
        f"-GPSImgDirection={update.gps_img_direction}",
        "-GPSImgDirectionRef=T",
        f"-GPSHPositioningError={update.gps_h_positioning_error}",
        "-IFD0:Make=PanoCam",
        "-IFD0:Model=P-1",
        "-IFD0:Artist=bench",
        "-XMP-GPano:ProjectionType=equirectangular",
        f"-XMP-GPano:FullPanoWidthPixels={WIDTH}",
        f"-XMP-GPano:FullPanoHeightPixels={HEIGHT}",
        f"-XMP-GPano:CroppedAreaImageWidthPixels={WIDTH}",
        f"-XMP-GPano:CroppedAreaImageHeightPixels={HEIGHT}",
        "-XMP-GPano:CroppedAreaLeftPixels=0",
        "-XMP-GPano:CroppedAreaTopPixels=0",
        f"-XMP-GPano:PoseHeadingDegrees={update.gpano.pose_heading_degrees}",
        "-overwrite_original",
        str(path),
        "-execute",
    ]


def fresh_copies(paths: list[Path], folder: Path) -> list[Path]:
    folder.mkdir()
    copies = [Path(shutil.copyfile(p, folder / p.name)) for p in paths]
    for copy in copies:
        copy.read_bytes()  # warm the page cache, as for the other runs
    os.sync()  # no pending writeback from the copying slows down the fsyncs being timed
    return copies


def bound(paths: list[Path]) -> None:
    for path in paths:
        write_atomic(path, path.read_bytes())


def panopipe(paths: list[Path]) -> None:
    for index, path in enumerate(paths):
        apply_metadata_file(path, update=update_for(index))


def exiftool(paths: list[Path]) -> None:
    argsfile = paths[0].parent / "args.txt"
    argsfile.write_text("\n".join(arg for i, p in enumerate(paths) for arg in exiftool_args(i, p)) + "\n")
    subprocess.run(["exiftool", "-@", str(argsfile)], check=True)


def main() -> None:
    args = fair.parse_args(__doc__, {"files": (200, 20)})
    paths = generate(args.files)
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    methods: dict[str, Callable[[list[Path]], None]] = {
        "panopipe apply_metadata_file": panopipe,
        "exiftool, one process (no fsync)": exiftool,
        "bound: read + write_atomic": bound,
    }
    if not shutil.which("exiftool"):
        del methods["exiftool, one process (no fsync)"]
    with fair.report(args, "apply_metadata") as report, tempfile.TemporaryDirectory(dir=OUT.parent) as work:
        report.note(f"{len(paths)} files of {WIDTH}x{HEIGHT}, {mb:.2f} MB on average, in {OUT}")
        if not shutil.which("exiftool"):
            report.unavailable("exiftool", "not installed: apt-get install -y libimage-exiftool-perl")
        made = iter(range(10**9))

        def timed(run: Callable[[list[Path]], None]) -> float:
            copies = fresh_copies(paths, Path(work) / str(next(made)))
            started = time.perf_counter()
            run(copies)
            return time.perf_counter() - started

        report.compare(
            {name: lambda run=run: timed(run) for name, run in methods.items()},
            title="lossless EXIF/XMP writes, 2 MB JPEGs",
            unit="files",
            count=len(paths),
        )


if __name__ == "__main__":
    main()
