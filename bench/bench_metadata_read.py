"""Benchmark: read EXIF + XMP GPano metadata from 1,000 JPEGs of 4096x2048.

Every side reads exactly the same list of files (exiftool gets it in an argument file, not the folder), the
same number of times, interleaved (``bench/fair.py``):

- in one process: ``panopipe.metadata.read_metadata``; ``exiftool -json -n -fast2`` asked only for the tags
  panopipe returns; the same with exiftool's full dump; Pillow (``getexif()`` with its Exif and GPS IFDs, the
  XMP packet parsed with ElementTree);
- on all cores: panopipe in a process pool, against one exiftool process (tags only) per core, each with its
  share of the files.

Each exiftool run includes starting Perl, which is what a user waits for. The files are generated once under
bench/out/ from one encoded image, each with its own EXIF and XMP; the page cache is warmed before timing.
panopipe's one-process reader is also timed in CPU time, which other work on a shared machine changes much
less than the elapsed time.

    python bench/bench_metadata_read.py [--quick] [--files 1000] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

import fair
from panopipe.metadata import read_metadata

# ExifTool's names for what ``read_metadata`` returns (ImageMetadata's fields).
TAGS = """DateTimeOriginal SubSecTimeOriginal OffsetTimeOriginal GPSLatitude GPSLongitude GPSAltitude
GPSImgDirection GPSHPositioningError GPSDateTime Make Model SerialNumber Orientation ImageWidth ImageHeight ProjectionType
PoseHeadingDegrees PosePitchDegrees PoseRollDegrees FullPanoWidthPixels FullPanoHeightPixels
CroppedAreaImageWidthPixels CroppedAreaImageHeightPixels CroppedAreaLeftPixels CroppedAreaTopPixels""".split()  # noqa: SIM905
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


def read_all(paths: list[Path] | list[str]) -> int:
    return sum(read_metadata(path).gps_latitude is not None for path in paths)


def panopipe_one_process(paths: list[Path]) -> None:
    assert read_all(paths) == len(paths)


def read_with_pillow(paths: list[Path]) -> None:
    found = 0
    for path in paths:
        with Image.open(path) as image:
            exif = image.getexif()
            exif.get_ifd(0x8769)
            gps = exif.get_ifd(0x8825)
            root = ElementTree.fromstring(image.info["xmp"])
            found += bool(gps) and root is not None
    assert found == len(paths)


def chunks(paths: list[str], count: int) -> list[list[str]]:
    size = -(-len(paths) // count)
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def read_all_cores(shares: list[list[str]], count: int, pool: ProcessPoolExecutor) -> None:
    assert sum(pool.map(read_all, shares)) == count


def exiftool_command(argfile: Path, tags: list[str]) -> list[str]:
    """exiftool reading the files listed in ``argfile`` (one per line), only ``tags`` (all when empty)."""
    return ["exiftool", "-json", "-n", "-fast2", "-q", *(f"-{tag}" for tag in tags), "-@", str(argfile)]


def exiftool_processes(commands: list[list[str]], count: int) -> None:
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    outputs = [p.communicate()[0] for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert sum(o.count(b'"SourceFile"') for o in outputs) == count


def main() -> None:
    args = fair.parse_args(__doc__, {"files": (1000, 100)})
    paths = make_files(args.files)
    for path in paths:  # warm the page cache
        path.read_bytes()
    assert read_all(paths) == len(paths)
    workers = fair.CORES
    megabytes = os.path.getsize(paths[0]) / 1e6
    exiftool = shutil.which("exiftool")
    with fair.report(args, "metadata_read") as report, tempfile.TemporaryDirectory() as tmp:
        report.note(f"{len(paths)} JPEGs of {WIDTH}x{HEIGHT}, {megabytes:.1f} MB each, EXIF + XMP GPano")
        lists = [Path(tmp) / f"files{i}.txt" for i in range(workers)]
        names = [str(path) for path in paths]
        for argfile, share in zip(lists, chunks(names, workers), strict=False):
            argfile.write_text("".join(f"{p}\n" for p in share))
        everything = Path(tmp) / "files.txt"
        everything.write_text("".join(f"{p}\n" for p in paths))
        one: dict[str, fair.Side] = {"panopipe read_metadata": lambda: panopipe_one_process(paths)}
        if exiftool:
            one["exiftool -fast2, panopipe's tags"] = lambda: exiftool_processes(
                [exiftool_command(everything, TAGS)], len(paths)
            )
            one["exiftool -fast2, full dump"] = lambda: exiftool_processes(
                [exiftool_command(everything, [])], len(paths)
            )
        else:
            report.unavailable("exiftool", "not installed: apt-get install -y libimage-exiftool-perl")
        one["Pillow getexif + XMP"] = lambda: read_with_pillow(paths)
        report.compare(one, title="metadata reads, 1 process", unit="files", count=len(paths))
        report.compare(
            {"panopipe read_metadata": lambda: panopipe_one_process(paths)},
            title="metadata reads, 1 process, CPU time",
            unit="files",
            count=len(paths),
            clock=time.process_time,
        )
        # Like exiftool's argument files, the pool's shares (four per worker, so that none idles at the end) are
        # made before the clock, and of names: a worker rebuilding 1,000 unpickled Paths spent 10-30 ms of the
        # 0.1 s run on that alone.
        shares = chunks(names, 4 * workers)
        with ProcessPoolExecutor(workers) as pool:
            cores: dict[str, fair.Side] = {
                f"panopipe, {workers} processes": lambda: read_all_cores(shares, len(paths), pool)
            }
            if exiftool:
                commands = [exiftool_command(argfile, TAGS) for argfile in lists]
                cores[f"exiftool -fast2, panopipe's tags, {workers} processes"] = lambda: exiftool_processes(
                    commands, len(paths)
                )
            report.compare(cores, title=f"metadata reads, {workers} cores", unit="files", count=len(paths))


if __name__ == "__main__":
    main()
