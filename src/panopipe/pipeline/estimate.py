"""What a run would cost on AWS Batch (Fargate and Fargate Spot) before it is launched, and afterwards what it
took against that estimate.

A job's cost is its time from start to finish in a worker, one vCPU busy: the median of the step's recorded
jobs (the latest 1,000 that succeeded), else the step's bench figure (:data:`BENCH_SECONDS`), for stitch and
nadir scaled by the size of the job's panorama against the bench's (:data:`BENCH_PIXELS`). A worker of
``WorkerVcpu`` vCPUs and ``WorkerMemoryMiB`` (the stack's defaults) runs one job per vCPU, so each vCPU-second
also pays for its share of the worker's memory (:mod:`panopipe.aws.prices`). S3 requests: each job reads its inputs and writes its outputs,
and the batch worker writes one result object that the runner reads. The wall time assumes the queue's
``maxvCpus`` busy, one job per vCPU, step after step; it leaves out queueing and task start-up (about a
minute per array job on Fargate).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from panopipe.aws.prices import US_EAST_1, Prices
from panopipe.catalog import Catalog, Selection
from panopipe.catalog.subjects import load_subjects
from panopipe.config import Settings
from panopipe.errors import ConfigError
from panopipe.pipeline.config import load_pipeline
from panopipe.pipeline.planner import plan
from panopipe.pipeline.store import job_seconds, latest_submissions
from panopipe.steps.base import Step
from panopipe.steps.stitch import StitchStep

BENCH_DATE = "2026-12-03"
BENCH_SECONDS: dict[str, float] = {
    "stitch": 3.0,
    "nadir": 0.135,
    "apply-metadata": 0.006,
    "derive": 0.02,
    "publish": 0.006,
}
"""Seconds of one vCPU per job where no job of the step was recorded yet, from bench/README.md as of
:data:`BENCH_DATE`. stitch: a production-size panorama (6 frames of 2448x2048 JPEGs into a 12288x6144 JPEG,
the default ``interpolation = "auto"``, remap tables cached: ``bench_stitch_production.py``; 5.3 s with
``"cubic"``);
nadir: 14.8 panoramas/s of 4096x2048 on 2 cores (2026-12-04); apply-metadata: 175 files/s of 2 MB JPEGs in one
process; derive: 97.7 thumbnails/s on 2 cores; publish: no bench, a copy of each output, taken
as apply-metadata's figure. Local files: in a worker the S3 reads and writes add to these."""
BENCH_PIXELS: dict[str, int] = {"stitch": 12288 * 6144, "nadir": 4096 * 2048}
"""The size of the panorama the bench figures of the steps that go by the pixel were measured on (stitch
decodes, remaps and encodes it; nadir decodes and encodes it), in pixels. Where a job's panorama size is known
(a rig shot's from the calibrated stitcher's configuration, a 360° image's from the catalog), its bench figure
is scaled by it, linearly. Small panoramas come out low, since a job's fixed costs are left out: the demo's
1408x704 stitch is estimated at 0.04 s and takes 0.09-0.1 s (0.35-0.4 s in a fresh worker). The other steps
are not scaled: apply-metadata and publish copy files, and derive decodes at a fraction of the size and
encodes fixed sizes."""


def stack_default(name: str) -> int:
    """The default of the stack's parameter ``name`` (``WorkerVcpu``, ``WorkerMemoryMiB``, ``BatchMaxVcpus``)."""
    from panopipe.aws.stack.parameters import PARAMETERS  # the Lambda package leaves the stack builder out

    return int(PARAMETERS[name]["Default"])


@dataclass(frozen=True, slots=True)
class Rates:
    """What one vCPU-second and one S3 request cost, from :class:`Prices` and the worker's memory per vCPU
    (Fargate bills a GiB of memory as a GB), by default the stack's default worker's."""

    prices: Prices = US_EAST_1
    gb_per_vcpu: float = 0.0

    def __post_init__(self) -> None:
        if not self.gb_per_vcpu:
            per_vcpu = stack_default("WorkerMemoryMiB") / 1024 / stack_default("WorkerVcpu")
            object.__setattr__(self, "gb_per_vcpu", per_vcpu)

    @property
    def fargate_per_vcpu_second(self) -> float:
        return (self.prices.fargate_vcpu_hour + self.gb_per_vcpu * self.prices.fargate_gb_hour) / 3600

    def fargate(self, vcpu_seconds: float) -> float:
        """USD on Fargate for ``vcpu_seconds``."""
        return vcpu_seconds * self.fargate_per_vcpu_second

    def spot(self, vcpu_seconds: float) -> float:
        """USD on Fargate Spot for ``vcpu_seconds``."""
        return self.fargate(vcpu_seconds) * (1 - self.prices.spot_discount)

    def s3(self, gets: int, puts: int) -> float:
        """USD for ``gets`` GET and ``puts`` PUT requests to S3 Standard."""
        return gets / 1000 * self.prices.s3_get_per_1000 + puts / 1000 * self.prices.s3_put_per_1000


@dataclass(frozen=True, slots=True)
class StepCost:
    """The jobs of one step: how many, seconds of one vCPU per job and where that figure comes from, and the
    S3 requests of all of them."""

    step: str
    jobs: int
    seconds_per_job: float
    basis: str
    gets: int
    puts: int

    @property
    def vcpu_seconds(self) -> float:
        return self.jobs * self.seconds_per_job


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a run would cost: per step, and in total on Fargate, on Fargate Spot and in S3 requests."""

    steps: tuple[StepCost, ...]
    max_vcpus: int
    rates: Rates

    @property
    def jobs(self) -> int:
        return sum(s.jobs for s in self.steps)

    @property
    def vcpu_seconds(self) -> float:
        return sum(s.vcpu_seconds for s in self.steps)

    @property
    def wall_seconds(self) -> float:
        """Step after step, ``max_vcpus`` jobs at a time."""
        return sum(math.ceil(s.jobs / self.max_vcpus) * s.seconds_per_job for s in self.steps)

    @property
    def s3_usd(self) -> float:
        return self.rates.s3(sum(s.gets for s in self.steps), sum(s.puts for s in self.steps))

    def to_dict(self) -> dict[str, Any]:
        rates = self.rates
        return {
            "steps": [
                {
                    "step": s.step,
                    "jobs": s.jobs,
                    "seconds_per_job": s.seconds_per_job,
                    "basis": s.basis,
                    "vcpu_seconds": s.vcpu_seconds,
                    "s3_gets": s.gets,
                    "s3_puts": s.puts,
                    "fargate_usd": rates.fargate(s.vcpu_seconds),
                    "fargate_spot_usd": rates.spot(s.vcpu_seconds),
                    "s3_usd": rates.s3(s.gets, s.puts),
                }
                for s in self.steps
            ],
            "jobs": self.jobs,
            "vcpu_seconds": self.vcpu_seconds,
            "fargate_usd": rates.fargate(self.vcpu_seconds),
            "fargate_spot_usd": rates.spot(self.vcpu_seconds),
            "s3_usd": self.s3_usd,
            "max_vcpus": self.max_vcpus,
            "wall_seconds": self.wall_seconds,
            "gb_per_vcpu": rates.gb_per_vcpu,
            "prices": rates.prices.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class CostComparison:
    """A step's latest submission: its estimate (what ``--estimate`` said just before, from the jobs recorded
    until then) against what its finished jobs took, in vCPU-seconds."""

    step: str
    jobs: int
    finished: int
    estimate: float
    actual: float
    basis: str

    def to_dict(self, rates: Rates) -> dict[str, Any]:
        return {
            "step": self.step,
            "jobs": self.jobs,
            "finished": self.finished,
            "basis": self.basis,
            "estimate_vcpu_seconds": self.estimate,
            "actual_vcpu_seconds": self.actual,
            "estimate_fargate_spot_usd": rates.spot(self.estimate),
            "actual_fargate_spot_usd": rates.spot(self.actual),
        }


def estimate(
    catalog: Catalog,
    selection: Selection | None = None,
    steps: list[str] | None = None,
    settings: Settings | None = None,
    *,
    force: bool = False,
    max_vcpus: int | None = None,
    rates: Rates | None = None,
) -> Estimate:
    """The cost of the run :func:`~panopipe.pipeline.plan` lists (nothing is submitted, nothing written).
    ``max_vcpus`` defaults to the stack's, and is at most what the stack takes (:class:`ConfigError`)."""
    from panopipe.aws.stack.parameters import PARAMETERS

    most = PARAMETERS["BatchMaxVcpus"]["MaxValue"]
    if max_vcpus is not None and not 1 <= max_vcpus <= most:
        raise ConfigError(f"max vCPUs must be 1 to {most} (the stack's BatchMaxVcpus), got {max_vcpus}")
    pipeline = load_pipeline(catalog, settings, steps)
    planned = plan(catalog, selection, steps, settings, force=force)
    pixels = panorama_pixels(
        catalog, settings, {item.subject for item in planned if item.step in BENCH_PIXELS}
    )
    sizes: dict[str, list[int | None]] = {step.name: [] for step in pipeline.steps}
    for item in planned:
        sizes[item.step].append(pixels.get(item.subject))
    costs = []
    for step in pipeline.steps:
        jobs = len(sizes[step.name])
        seconds, basis = per_job(step.name, job_seconds(catalog, step.name), sizes[step.name])
        gets, puts = requests_per_job(step)
        costs.append(StepCost(step.name, jobs, seconds, basis, jobs * gets, jobs * puts))
    return Estimate(tuple(costs), max_vcpus or stack_default("BatchMaxVcpus"), rates or Rates())


def panorama_pixels(catalog: Catalog, settings: Settings | None, subjects: Collection[str]) -> dict[str, int]:
    """The size in pixels of each subject's panorama, where it is known: a rig shot's from the stitch step's
    configuration (:func:`~panopipe.steps.stitch.panorama_size`), a 360° image's from the catalog."""
    if not subjects:
        return {}
    stitch = next((s for s in load_pipeline(catalog, settings).steps if isinstance(s, StitchStep)), None)
    shot_size = stitch.panorama_size if stitch else None
    found: dict[str, int] = {}
    images = []
    for subject in subjects:
        kind, _, key = subject.partition(":")
        if kind == "image":
            images.append(key)
        elif shot_size:
            found[subject] = shot_size[0] * shot_size[1]
    if images:
        with catalog.connect() as conn:
            for image in load_subjects(conn, "image", images, ("width", "height")):
                width, height = image.frames[0].width, image.frames[0].height
                if width and height:
                    found[image.id] = width * height
    return found


def per_job(step: str, measured: Iterable[float], pixels: Sequence[int | None] = ()) -> tuple[float, str]:
    """Seconds of one vCPU per job of ``step``, and where the figure comes from: the median of ``measured``,
    else the bench figure, for the steps in :data:`BENCH_PIXELS` scaled for each job by the size of its
    panorama (``pixels``, ``None`` where it is not known)."""
    seconds = list(measured)
    if seconds:
        return statistics.median(seconds), f"median of {len(seconds)} recorded jobs"
    bench = BENCH_SECONDS.get(step, max(BENCH_SECONDS.values()))
    basis = f"bench figure ({BENCH_DATE})"
    reference = BENCH_PIXELS.get(step)
    known = [p for p in pixels if p]
    if not reference or not known:
        return bench, basis
    scaled = statistics.fmean(bench * p / reference if p else bench for p in pixels)
    low, high = min(known) / 1e6, max(known) / 1e6
    sizes = f"{low:.3g} Mpx" if low == high else f"{low:.3g}-{high:.3g} Mpx"
    unknown = len(pixels) - len(known)
    return scaled, f"{basis} scaled to {sizes}" + (
        f"; {unknown} job(s) of unknown size unscaled" if unknown else ""
    )


def requests_per_job(step: Step) -> tuple[int, int]:
    """S3 GETs and PUTs of one job of ``step``: its inputs and outputs, and the batch worker's result object
    (written by the worker, read by the runner)."""
    outputs = len(step.outputs)
    if step.name == "derive" and not step.params.get("preview"):
        outputs -= 1
    inputs = 1
    if step.name == "stitch":
        rig = getattr(step, "job_params", {}).get("rig")
        inputs = len(rig["cameras"]) if rig else 6
    elif step.name == "publish":
        inputs = outputs
    return inputs + 1, outputs + 1


def estimate_vs_actual(catalog: Catalog, settings: Settings | None = None) -> tuple[CostComparison, ...]:
    """For each step's latest submission, the estimate made from the jobs recorded before it (or the bench
    figure scaled to its subjects' panoramas, as ``settings`` configure them now) against the recorded time
    of its jobs that finished."""
    submissions = latest_submissions(catalog)
    scaled = {s for step, (_, subjects, _) in submissions.items() if step in BENCH_PIXELS for s in subjects}
    pixels = panorama_pixels(catalog, settings, scaled)
    found = []
    for step, (submitted_at, subjects, seconds) in sorted(submissions.items()):
        sizes = [pixels.get(subject) for subject in subjects]
        figure, basis = per_job(step, job_seconds(catalog, step, before=submitted_at), sizes)
        found.append(
            CostComparison(step, len(subjects), len(seconds), len(subjects) * figure, sum(seconds), basis)
        )
    return tuple(found)


__all__ = [
    "BENCH_DATE",
    "BENCH_PIXELS",
    "BENCH_SECONDS",
    "CostComparison",
    "Estimate",
    "Rates",
    "StepCost",
    "estimate",
    "estimate_vs_actual",
    "panorama_pixels",
    "per_job",
    "requests_per_job",
    "stack_default",
]
