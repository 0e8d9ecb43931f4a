"""Benchmark: a production-size stitch, 6 frames of 2448x2048 into a 12288x6144 panorama (a Mosaic 51 rig's),
in CPU seconds and peak memory per panorama, and what 10,000 panoramas cost on Fargate Spot, beside Hugin.

The frames are rendered from the synthetic scene through the demo rig's geometry (``panopipe-demo-6``: four 110°
rectilinear cameras around the horizon, 180° fisheyes up and down, which cover the sphere) at the production size
and written as JPEGs (quality 90, cached under ``bench/out/``). A panopipe run is a fresh process that does what a
process of a batch worker's pool does (``start_worker_process``, then the stitch step's own code,
``StitchStep.execute``: read and decode the JPEGs, stitch with the calibrated stitcher, encode the panorama JPEG,
write it): a cold first panorama, which builds the remap tables, then ``--panoramas - 1`` warm ones with the tables
cached. It reports each panorama's CPU seconds (user + sys of the process and its children, ``resource.getrusage``,
every thread counted: CPU seconds are what Fargate bills, not wall time), wall seconds, and the peak resident
memory (``ru_maxrss``, so native numpy/OpenCV buffers count) of the cold panorama and, after resetting the peak
(``/proc/self/clear_refs``), of the warm ones. There is one panopipe side per interpolation, the default first.

The other side is Hugin (``nona`` + ``enblend``, as in ``bench_stitch.py``) on the same frames, to a TIFF; it
builds its own remap each run, so its fair match is panopipe's cold panorama (the first table); the second
table holds panopipe's warm panoramas, a batch worker's everyday case, with Hugin's same runs beside them (it
has no cache to warm). All sides run ``--runs`` times, interleaved (``fair.py``); Hugin is left out of the
untimed warm-up (minutes at this size, and nothing of it is kept from one run to the next). Needs
``apt-get install -y hugin-tools enblend``; without them Hugin is reported unavailable.

PSNR: each interpolation's panorama (the stitcher's output, before JPEG) and Hugin's against the scene, at the
run's size, from the same JPEG frames.

Dollars: one job per vCPU (as ``panopipe run --estimate`` assumes), the smallest Fargate task size whose memory
per vCPU fits the peak, priced from :mod:`panopipe.aws.prices` for the warm CPU seconds.

    python bench/bench_stitch_production.py [--quick] [--divisor 1] [--runs 3] [--panoramas 3] [--no-hugin]
        [--profile]

``--divisor N`` divides both sizes on each side (2: 1224x1024 frames into 6144x3072); ``--quick`` is
``--divisor 4`` (612x512 frames into 3072x1536) and 3 runs. ``--profile`` prints the
cProfile of one cold and one warm panorama (stages: decode, remap tables, blend, encode) instead. A full-size
run with Hugin takes about 4 minutes per run on 2 cores (Hugin about 2.5 of them).
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
from bench_stitch import hugin_commands, read_hugin_output, write_pto
from panopipe.aws.prices import US_EAST_1
from panopipe.demo import demo_rig
from panopipe.executors.local import start_worker_process
from panopipe.pipeline.estimate import Rates
from panopipe.steps.stitch import StitchStep
from panopipe.stitching import CalibratedParams, CalibratedStitcher, psnr, render_views, synthetic_panorama

OUT = Path(__file__).parent / "out" / "stitch-production"
FRAME = (2448, 2048)
PANORAMA = (12288, 6144)
GOAL_CPU_S, GOAL_GIB, GOAL_USD = 4.0, 3.0, 1.0
PANORAMAS = 10_000
INTERPOLATIONS = ("cubic", "linear")
DEFAULT = CalibratedParams().interpolation
VARIANTS = (DEFAULT, *(name for name in INTERPOLATIONS if name != DEFAULT))
"""One panopipe side per interpolation, the default first (the reference of the ratios)."""
HUGIN = "Hugin nona (poly3) + enblend (NFT seams), to a TIFF"
FARGATE_SIZES = {0.25: (0.5, 1, 2), 0.5: (1, 2, 3, 4), 1: range(2, 9), 2: range(4, 17), 4: range(8, 31)}
"""Fargate task sizes: vCPU -> the memory sizes (GB, billed as GiB) allowed with it."""


def sizes(divisor: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return (FRAME[0] // divisor, FRAME[1] // divisor), (PANORAMA[0] // divisor, PANORAMA[1] // divisor)


def scene(panorama: tuple[int, int]) -> np.ndarray:
    """The synthetic scene the frames are rendered from, at the ``panorama`` size."""
    return synthetic_panorama(*panorama, seed=0)


def frames(frame: tuple[int, int], panorama: tuple[int, int], truth: np.ndarray | None = None) -> list[Path]:
    """The rig shot's JPEGs at ``frame`` size, rendered from the scene of the ``panorama`` size (cached)."""
    folder = OUT / f"{frame[0]}x{frame[1]}"
    paths = [folder / f"cam{index}.jpg" for index in range(len(demo_rig().cameras))]
    if not all(path.exists() for path in paths):
        folder.mkdir(parents=True, exist_ok=True)
        print(
            f"rendering the rig shot at {frame[0]}x{frame[1]} from a {panorama[0]}x{panorama[1]} scene",
            flush=True,
        )
        views = render_views(scene(panorama) if truth is None else truth, demo_rig(*frame))
        for path, view in zip(paths, views, strict=True):
            cv2.imwrite(str(path), view[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


def payload(
    files: Sequence[Path],
    frame: tuple[int, int],
    panorama: tuple[int, int],
    output: Path,
    interpolation: str = DEFAULT,
) -> dict[str, Any]:
    """The stitch job a worker receives: the demo's stitch settings (quality 92) at these sizes."""
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
    start_worker_process()  # as each process of the worker's pool starts
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
    command += ["--divisor", str(args.divisor)]
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
    files: Sequence[Path], frame: tuple[int, int], panorama: tuple[int, int], output: Path
) -> dict[str, float]:
    """One Hugin stitch of the same frames to the TIFF ``output``: CPU seconds (its processes) and wall seconds."""
    rig = demo_rig(*frame)
    with tempfile.TemporaryDirectory(prefix="bench-stitch-production-hugin-") as tmp:
        workdir = Path(tmp)
        for path in files:
            shutil.copy(path, workdir / path.name)
        pto = workdir / "rig.pto"
        write_pto(pto, rig, *panorama, [path.name for path in files])
        cpu, wall = cpu_seconds(), time.perf_counter()
        for command in hugin_commands(pto, workdir, output, *panorama, len(files)):
            subprocess.run(command, cwd=workdir, check=True, capture_output=True)
        return {"cpu_s": cpu_seconds() - cpu, "wall_s": time.perf_counter() - wall}


def psnr_notes(truth: np.ndarray, files: Sequence[Path], frame: tuple[int, int], hugin: Path | None) -> str:
    """PSNR against the scene of each interpolation's panorama (before JPEG) and of Hugin's, from the same frames."""
    height, width = truth.shape[:2]
    views = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in files]
    figures = []
    for interpolation in VARIANTS:
        params = {"width": width, "height": height, "interpolation": interpolation}
        result = CalibratedStitcher(demo_rig(*frame)).stitch(views, params)
        figures.append(f"panopipe {interpolation} {psnr(result.panorama, truth, result.coverage):.2f} dB")
        del result
    if hugin is not None and hugin.exists():
        panorama, coverage = read_hugin_output(hugin)
        figures.append(f"Hugin {psnr(panorama, truth, coverage):.2f} dB")
    return f"PSNR against the scene at {width}x{height} from the JPEG frames: {', '.join(figures)}"


def bench(report: fair.Report, args: argparse.Namespace) -> None:
    frame, panorama = sizes(args.divisor)
    truth = scene(panorama)
    files = frames(frame, panorama, truth)
    title = f"production stitch: 6 frames of {frame[0]}x{frame[1]} (JPEG) -> {panorama[0]}x{panorama[1]}"
    workers: dict[str, list[dict[str, Any]]] = {interpolation: [] for interpolation in VARIANTS}
    hugin_runs: list[dict[str, float]] = []

    def panopipe(interpolation: str) -> fair.Side:
        def side() -> float:
            workers[interpolation].append(run_worker(args, interpolation))
            return float(workers[interpolation][-1]["cold"]["cpu_s"])

        return side

    sides = {f"panopipe, cold, {interpolation}": panopipe(interpolation) for interpolation in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-stitch-production-hugin-out-") as tmp:
        hugin_output = Path(tmp) / "hugin.tif" if not args.no_hugin else None
        if args.no_hugin:
            report.note("Hugin: skipped (--no-hugin)")
        elif shutil.which("nona") and shutil.which("enblend"):

            def hugin() -> float:
                hugin_runs.append(hugin_once(files, frame, panorama, Path(tmp) / "hugin.tif"))
                return hugin_runs[-1]["cpu_s"]

            sides[HUGIN] = hugin
        else:
            report.unavailable(
                "Hugin", "nona or enblend not installed: apt-get install -y hugin-tools enblend"
            )
        cold = report.compare(
            sides,
            title=f"{title}, CPU seconds (user + sys) of a cold panorama (remap tables built), file to file",
            unit="panoramas",
            unwarmed=(HUGIN,),
        )
        for runs in workers.values():
            del runs[: args.warmup]  # the warm-up's workers
        notes = [psnr_notes(truth, files, frame, hugin_output)]
    del truth
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    for interpolation, runs in workers.items():
        warm = f"panopipe, warm (tables cached), {interpolation}"
        cpu[warm] = [statistics.median(w["cpu_s"] for w in r["warm"]) for r in runs]
        wall[warm] = [statistics.median(w["wall_s"] for w in r["warm"]) for r in runs]
        wall[f"panopipe, cold, {interpolation}"] = [r["cold"]["wall_s"] for r in runs]
        notes += cost_notes(
            interpolation, runs, statistics.median(cpu[warm]), cold.median(f"panopipe, cold, {interpolation}")
        )
    if hugin_runs:
        cpu[f"{HUGIN} (no cache: the same runs)"] = [run["cpu_s"] for run in hugin_runs]
        wall[HUGIN] = [run["wall_s"] for run in hugin_runs]
    notes.append(f"OpenCV threads {cv2.getNumThreads()}, {fair.CORES} cores; CPU seconds count every thread")
    goal = f"< {GOAL_CPU_S:g} CPU s and < {GOAL_GIB:g} GB per panorama, < ${GOAL_USD:g} per {PANORAMAS:,} on Fargate Spot"
    for table, seconds, table_goal, table_notes in (
        (
            "CPU seconds (user + sys) of a warm panorama (remap tables cached: a batch worker's)",
            cpu,
            goal,
            notes,
        ),
        ("wall seconds per panorama", wall, "", []),
    ):
        comparison = fair.Comparison(
            f"{title}, {table}, file to file, from the runs above",
            "panoramas",
            1,
            seconds,
            cold.load_before,
            cold.load_after,
            table_goal,
            table_notes,
        )
        fair.print_comparison(comparison)
        report.comparisons.append(comparison)


def cost_notes(interpolation: str, runs: list[dict[str, Any]], warm_cpu: float, cold_cpu: float) -> list[str]:
    """Peak memory and dollars per 10,000 panoramas of one interpolation's runs, against the goal."""
    # ru_maxrss is reset with the peak on some kernels: the cold panorama's own peak is taken as well.
    peak = max(max(r["cold_peak_mib"], r["maxrss_mib"]) for r in runs) / 1024
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
        parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)

    args = fair.parse_args(__doc__, {"panoramas": (3, 3), "divisor": (1, 4)}, argv, options, runs=(3, 3))
    if args.worker:
        measured = worker(
            frames(*sizes(args.divisor)), *sizes(args.divisor), max(2, args.panoramas), args.worker
        )
        print(json.dumps(measured))
        return
    if args.profile:
        profile(frames(*sizes(args.divisor)), *sizes(args.divisor))
        return
    with fair.report(args, "stitch_production") as report:
        report.note(f"numpy {np.__version__}, opencv {cv2.__version__}, OpenCV threads {cv2.getNumThreads()}")
        bench(report, args)


if __name__ == "__main__":
    main()
