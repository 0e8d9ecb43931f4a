"""Benchmark: a production-size stitch, 6 frames of 2448x2048 into a 12288x6144 panorama (a Mosaic 51 rig's),
in CPU seconds and peak memory per panorama, and what 10,000 panoramas cost on Fargate Spot.

The frames are rendered from the synthetic scene through the demo rig's geometry (``panopipe-demo-6``: four
110° rectilinear cameras around the horizon, 180° fisheyes up and down, which cover the sphere) at the
production size and written as JPEGs (quality 90, cached under ``bench/out/``). Each run is a fresh worker
process that does what a batch worker does, through the stitch step's own code (``StitchStep.execute``: read
and decode the JPEGs, stitch with the calibrated stitcher, encode the panorama JPEG, write it): a cold first
panorama, which builds the remap tables, then ``--panoramas - 1`` warm ones with the tables cached. It reports
each panorama's CPU seconds (user + sys of the process and its children, ``resource.getrusage``, every thread
counted: CPU seconds are what Fargate bills, not wall time), wall seconds, and the peak resident memory
(``ru_maxrss``, so native numpy/OpenCV buffers count) of the cold panorama and, after resetting the peak
(``/proc/self/clear_refs``), of the warm ones.

Dollars: one job per vCPU (as ``panopipe run --estimate`` assumes), the smallest Fargate task size whose memory
per vCPU fits the peak, priced from :mod:`panopipe.aws.prices` for the warm CPU seconds. The reference is
Hugin (``nona`` + ``enblend``, as in ``bench_stitch.py``) on the same frames, run once: it takes minutes at
this size (``apt-get install -y hugin-tools enblend``; without them it is reported unavailable).

    python bench/bench_stitch_production.py [--quick] [--runs 3] [--panoramas 3] [--no-hugin] [--profile]

``--quick`` is a quarter of the size on each side (612x512 frames into 3072x1536). ``--profile`` prints the
cProfile of one cold and one warm panorama (stages: decode, remap tables, blend, encode) instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import fair
from bench_stitch import hugin_commands, write_pto
from panopipe.aws.prices import US_EAST_1
from panopipe.demo import demo_rig
from panopipe.pipeline.estimate import Rates
from panopipe.steps.stitch import StitchStep
from panopipe.stitching import render_views, synthetic_panorama

OUT = Path(__file__).parent / "out" / "stitch-production"
FRAME = (2448, 2048)
PANORAMA = (12288, 6144)
QUICK_DIVISOR = 4
GOAL_CPU_S, GOAL_GIB, GOAL_USD = 4.0, 3.0, 1.0
PANORAMAS = 10_000
INTERPOLATIONS = ("cubic", "linear")
FARGATE_SIZES = {0.25: (0.5, 1, 2), 0.5: (1, 2, 3, 4), 1: range(2, 9), 2: range(4, 17), 4: range(8, 31)}
"""Fargate task sizes: vCPU -> the memory sizes (GB, billed as GiB) allowed with it."""


def sizes(quick: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    divisor = QUICK_DIVISOR if quick else 1
    return (FRAME[0] // divisor, FRAME[1] // divisor), (PANORAMA[0] // divisor, PANORAMA[1] // divisor)


def frames(frame: tuple[int, int], panorama: tuple[int, int]) -> list[Path]:
    """The rig shot's JPEGs at ``frame`` size, rendered from a scene of the ``panorama`` size (cached)."""
    folder = OUT / f"{frame[0]}x{frame[1]}"
    paths = [folder / f"cam{index}.jpg" for index in range(len(demo_rig().cameras))]
    if not all(path.exists() for path in paths):
        folder.mkdir(parents=True, exist_ok=True)
        print(
            f"rendering the rig shot at {frame[0]}x{frame[1]} from a {panorama[0]}x{panorama[1]} scene",
            flush=True,
        )
        views = render_views(synthetic_panorama(*panorama, seed=0), demo_rig(*frame))
        for path, view in zip(paths, views, strict=True):
            cv2.imwrite(str(path), view[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


def payload(
    files: Sequence[Path],
    frame: tuple[int, int],
    panorama: tuple[int, int],
    output: Path,
    interpolation: str = "cubic",
) -> dict[str, Any]:
    """The stitch job a worker receives: the demo's stitch settings (cubic, quality 92) at these sizes."""
    params = {"width": panorama[0], "height": panorama[1], "interpolation": interpolation}
    rig = demo_rig(*frame).to_dict()
    return {
        "params": {"stitcher": "calibrated", "params": params, "quality": 92, "rig": rig},
        "problem": None,
        "inputs": [str(path) for path in files],
        "outputs": {"panorama": str(output)},
    }


def cpu_seconds() -> float:
    """User + sys seconds of this process (all its threads) and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_mib() -> float:
    """The peak resident memory since the process started or :func:`reset_peak` (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Reset the peak resident memory to the current one (Linux); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def stitch_once(job: dict[str, Any]) -> dict[str, float]:
    """One panorama through the stitch step, file to file: its CPU and wall seconds."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    StitchStep.execute(job, lambda line: None)
    measured = {"cpu_s": cpu_seconds() - cpu, "wall_s": time.perf_counter() - wall}
    Path(job["outputs"]["panorama"]).unlink()
    return measured


def worker(
    files: Sequence[Path], frame: tuple[int, int], panorama: tuple[int, int], count: int, interpolation: str
) -> dict[str, Any]:
    """What a fresh batch worker measures: a cold panorama (tables built), then ``count - 1`` warm ones."""
    with tempfile.TemporaryDirectory(prefix="bench-stitch-production-") as tmp:
        outputs = [Path(tmp) / f"panorama-{i}.jpg" for i in range(count)]
        jobs = [payload(files, frame, panorama, output, interpolation) for output in outputs]
        startup_mib = peak_mib()
        cold = stitch_once(jobs[0])
        cold_peak = peak_mib()
        reset = reset_peak()
        warm = [stitch_once(job) for job in jobs[1:]]
    return {
        "startup_mib": startup_mib,
        "cold": cold,
        "cold_peak_mib": cold_peak,
        "warm": warm,
        "warm_peak_mib": peak_mib() if reset and warm else None,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def profile(files: Sequence[Path], frame: tuple[int, int], panorama: tuple[int, int]) -> None:
    """cProfile of a cold and a warm panorama: where the CPU time goes, stage by stage."""
    with tempfile.TemporaryDirectory(prefix="bench-stitch-production-") as tmp:
        for label, i in (("cold (remap tables built)", 0), ("warm (tables cached)", 1)):
            profiler = cProfile.Profile()
            cpu = cpu_seconds()
            profiler.runcall(
                StitchStep.execute, payload(files, frame, panorama, Path(tmp) / f"{i}.jpg"), print
            )
            print(f"\n=== {label}: {cpu_seconds() - cpu:.2f} CPU s, peak {peak_mib():,.0f} MiB")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(14)
            reset_peak()


def run_worker(args: argparse.Namespace, interpolation: str) -> dict[str, Any]:
    """One fresh worker process's measurements."""
    command = [sys.executable, __file__, "--worker", interpolation, "--panoramas", str(args.panoramas)]
    command += ["--quick"] if args.quick else []
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def fargate_task(peak_gib: float) -> tuple[float, int]:
    """The Fargate task size (vCPU, GB) with the least memory per vCPU that runs one job per vCPU (one job
    in a task of less than one vCPU), each job needing ``peak_gib``."""
    fits = [
        (vcpu, gb)
        for vcpu, allowed in FARGATE_SIZES.items()
        for gb in allowed
        if gb >= peak_gib * max(1, vcpu)
    ]
    if not fits:
        raise SystemExit(f"no Fargate task size fits {peak_gib:.1f} GiB per vCPU")
    return min(fits, key=lambda size: (size[1] / size[0], size[0]))


def hugin_once(
    files: Sequence[Path], frame: tuple[int, int], panorama: tuple[int, int]
) -> tuple[float, float]:
    """One Hugin stitch of the same frames to a TIFF: CPU seconds (its processes) and wall seconds."""
    rig = demo_rig(*frame)
    with tempfile.TemporaryDirectory(prefix="bench-stitch-production-hugin-") as tmp:
        workdir = Path(tmp)
        for path in files:
            shutil.copy(path, workdir / path.name)
        pto = workdir / "rig.pto"
        write_pto(pto, rig, *panorama, [path.name for path in files])
        cpu, wall = cpu_seconds(), time.perf_counter()
        for command in hugin_commands(pto, workdir, workdir / "hugin.tif", *panorama, len(files)):
            subprocess.run(command, cwd=workdir, check=True, capture_output=True)
        return cpu_seconds() - cpu, time.perf_counter() - wall


def comparison(
    title: str, seconds: dict[str, list[float]], load_before: float, goal: str, notes: list[str]
) -> fair.Comparison:
    result = fair.Comparison(title, "panoramas", 1, seconds, load_before, fair.load_average(), goal, notes)
    fair.print_comparison(result)
    return result


def psnr_note(quick_frame: tuple[int, int], quick_panorama: tuple[int, int]) -> str:
    """PSNR against the scene of each interpolation at the ``--quick`` size, from the same JPEG frames."""
    from panopipe.stitching import CalibratedStitcher, psnr

    scene = synthetic_panorama(*quick_panorama, seed=0)
    views = [cv2.imread(str(path))[:, :, ::-1] for path in frames(quick_frame, quick_panorama)]
    figures = []
    for interpolation in INTERPOLATIONS:
        params = {"width": quick_panorama[0], "height": quick_panorama[1], "interpolation": interpolation}
        result = CalibratedStitcher(demo_rig(*quick_frame)).stitch(views, params)
        figures.append(f"{interpolation} {psnr(result.panorama, scene, result.coverage):.2f} dB")
    size = f"{quick_panorama[0]}x{quick_panorama[1]}"
    return f"PSNR against the scene at {size} from the JPEG frames: {', '.join(figures)}"


def bench(report: fair.Report, args: argparse.Namespace) -> None:
    frame, panorama = sizes(args.quick)
    files = frames(frame, panorama)
    title = f"production stitch: 6 frames of {frame[0]}x{frame[1]} (JPEG) -> {panorama[0]}x{panorama[1]} JPEG"
    load_before = fair.load_average()
    for _ in range(args.warmup):
        run_worker(args, INTERPOLATIONS[0])
    results: dict[str, list[dict[str, Any]]] = {interpolation: [] for interpolation in INTERPOLATIONS}
    for round_ in range(args.runs):  # fresh workers, interleaved, the first side rotating
        for interpolation in INTERPOLATIONS[round_ % 2 :] + INTERPOLATIONS[: round_ % 2]:
            results[interpolation].append(run_worker(args, interpolation))
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    notes = []
    for interpolation, runs in results.items():
        warm = f"panopipe, warm (remap tables cached), {interpolation}"
        cold = f"panopipe, cold (remap tables built), {interpolation}"
        cpu[warm] = [statistics.median(w["cpu_s"] for w in r["warm"]) for r in runs]
        cpu[cold] = [r["cold"]["cpu_s"] for r in runs]
        wall[warm] = [statistics.median(w["wall_s"] for w in r["warm"]) for r in runs]
        wall[cold] = [r["cold"]["wall_s"] for r in runs]
        notes += cost_notes(interpolation, runs, statistics.median(cpu[warm]), statistics.median(cpu[cold]))
    notes.append(psnr_note(*sizes(True)))
    notes.append(f"OpenCV threads {cv2.getNumThreads()}, {fair.CORES} cores; CPU seconds count every thread")
    goal = f"< {GOAL_CPU_S:g} CPU s and < {GOAL_GIB:g} GB per panorama, < ${GOAL_USD:g} per {PANORAMAS:,} on Fargate Spot"
    cpu_title = f"{title}, CPU seconds (user + sys) per panorama, file to file"
    report.comparisons.append(comparison(cpu_title, cpu, load_before, goal, notes))
    wall_notes: list[str] = []
    load_before = fair.load_average()
    if args.no_hugin:
        wall_notes.append("Hugin: skipped (--no-hugin)")
    elif shutil.which("nona") and shutil.which("enblend"):
        hugin_cpu, hugin_wall = hugin_once(files, frame, panorama)
        cold_cpu = statistics.median(cpu[f"panopipe, cold (remap tables built), {INTERPOLATIONS[0]}"])
        wall_notes.append(
            f"Hugin nona (poly3) + enblend (NFT seams), one run, to a TIFF: {hugin_wall:.1f} s wall, "
            f"{hugin_cpu:.1f} CPU s ({hugin_cpu / cold_cpu:.1f}x panopipe's cold cubic CPU seconds)"
        )
        wall["Hugin nona + enblend (NFT seams), one run"] = [hugin_wall] * args.runs
    else:
        report.unavailable("Hugin", "nona or enblend not installed: apt-get install -y hugin-tools enblend")
    wall_title = f"{title}, wall seconds per panorama, file to file"
    report.comparisons.append(comparison(wall_title, wall, load_before, "", wall_notes))


def cost_notes(interpolation: str, runs: list[dict[str, Any]], warm_cpu: float, cold_cpu: float) -> list[str]:
    """Peak memory and dollars per 10,000 panoramas of one interpolation's runs, against the goal."""
    peak = max(r["maxrss_mib"] for r in runs) / 1024
    warm_peaks = [r["warm_peak_mib"] for r in runs if r["warm_peak_mib"] is not None]
    warm_peak = max(warm_peaks) / 1024 if warm_peaks else peak
    vcpu, gb = fargate_task(peak)
    rates = Rates(US_EAST_1, gb / vcpu)
    spot, on_demand = rates.spot(warm_cpu) * PANORAMAS, rates.fargate(warm_cpu) * PANORAMAS
    cold_spot = rates.spot(cold_cpu) * PANORAMAS

    def verdict(ok: bool) -> str:
        return "meets the goal" if ok else "MISSES the goal"

    return [
        f"{interpolation}: {warm_cpu:.2f} CPU s per warm panorama ({verdict(warm_cpu < GOAL_CPU_S)}), "
        f"{cold_cpu:.2f} cold; peak memory {peak:.2f} GiB with the cold panorama "
        f"({verdict(peak < GOAL_GIB)}), {warm_peak:.2f} GiB over warm panoramas alone, "
        f"{runs[0]['startup_mib']:.0f} MiB at start",
        f"{interpolation}: Fargate Spot ({US_EAST_1.region}, prices of {US_EAST_1.as_of}, "
        f"{US_EAST_1.spot_discount:.0%} off), task {vcpu:g} vCPU / {gb} GB, one job per vCPU: "
        f"${spot:.3f} per {PANORAMAS:,} warm panoramas ({verdict(spot < GOAL_USD)}), ${cold_spot:.3f} if every "
        f"one were cold; on-demand Fargate ${on_demand:.3f}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--no-hugin", action="store_true", help="leave Hugin out (minutes at full size)")
        parser.add_argument(
            "--profile", action="store_true", help="print the cProfile of a cold and a warm panorama"
        )
        parser.add_argument("--worker", choices=INTERPOLATIONS, help=argparse.SUPPRESS)

    args = fair.parse_args(__doc__, {"panoramas": (3, 3)}, argv, options)
    if args.worker:
        measured = worker(frames(*sizes(args.quick)), *sizes(args.quick), max(2, args.panoramas), args.worker)
        print(json.dumps(measured))
        return
    if args.profile:
        profile(frames(*sizes(args.quick)), *sizes(args.quick))
        return
    args.runs = min(args.runs, 3)  # each run is a fresh worker process stitching --panoramas panoramas
    with fair.report(args, "stitch_production") as report:
        report.note(f"numpy {np.__version__}, opencv {cv2.__version__}, OpenCV threads {cv2.getNumThreads()}")
        bench(report, args)


if __name__ == "__main__":
    main()
