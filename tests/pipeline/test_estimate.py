"""``panopipe run --estimate`` and the cost part of ``panopipe status``, through the command line, with the
expected figures worked out here from the price table, the stack's defaults and the recorded job timings."""

from __future__ import annotations

import json
import math
import re
import statistics
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.pipeline.captures import Project, add_panoramas, add_rig_shots, panorama_project

from panopipe.aws.prices import US_EAST_1
from panopipe.aws.stack.parameters import PARAMETERS
from panopipe.catalog import Catalog
from panopipe.catalog.schema import jobs
from panopipe.cli import main
from panopipe.pipeline import run
from panopipe.pipeline.estimate import BENCH_SECONDS, estimate, estimate_vs_actual

STEPS = ("apply-metadata", "derive", "publish")
# S3 requests per job: inputs + the result object read back, outputs + the result object written.
REQUESTS = {"apply-metadata": (2, 2), "derive": (2, 2), "publish": (4, 4)}  # derive: no preview here


@pytest.fixture
def common(catalog_url: str, tmp_path: Path) -> tuple[str, ...]:
    return ("--catalog", catalog_url, "--config", str(panorama_project(catalog_url, tmp_path)))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def usd_per_vcpu_second() -> float:
    gb_per_vcpu = PARAMETERS["WorkerMemoryMiB"]["Default"] / 1024 / int(PARAMETERS["WorkerVcpu"]["Default"])
    return (US_EAST_1.fargate_vcpu_hour + gb_per_vcpu * US_EAST_1.fargate_gb_hour) / 3600


def expected(seconds: dict[str, float], jobs: int, max_vcpus: int) -> dict[str, float]:
    vcpu_seconds = sum(jobs * seconds[step] for step in STEPS)
    gets = sum(jobs * REQUESTS[step][0] for step in STEPS)
    puts = sum(jobs * REQUESTS[step][1] for step in STEPS)
    fargate = vcpu_seconds * usd_per_vcpu_second()
    return {
        "jobs": jobs * len(STEPS),
        "vcpu_seconds": vcpu_seconds,
        "fargate_usd": fargate,
        "fargate_spot_usd": fargate * (1 - US_EAST_1.spot_discount),
        "s3_usd": gets / 1000 * US_EAST_1.s3_get_per_1000 + puts / 1000 * US_EAST_1.s3_put_per_1000,
        "wall_seconds": sum(math.ceil(jobs / max_vcpus) * seconds[step] for step in STEPS),
    }


def test_estimate_before_any_run_uses_the_bench_figures_and_submits_nothing(capsys, common, catalog_url):
    code, out, _ = cli(capsys, "run", *common, "--estimate", "--max-vcpus", "2", "--json")

    assert code == 0
    cost = json.loads(out)
    assert [(s["step"], s["jobs"]) for s in cost["steps"]] == [
        ("stitch", 0),
        ("apply-metadata", 3),
        ("derive", 3),
        ("publish", 3),
    ]
    assert {s["step"]: s["basis"] for s in cost["steps"] if s["jobs"]} == dict.fromkeys(
        STEPS, "bench figure (2026-12-03)"
    )
    want = expected(BENCH_SECONDS, 3, 2)
    assert {key: cost[key] for key in want} == pytest.approx(want)
    assert cost["max_vcpus"] == 2 and cost["prices"]["as_of"] == US_EAST_1.as_of
    with Catalog.open(catalog_url) as catalog, catalog.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 0
    assert json.loads(cli(capsys, "status", *common, "--json")[1])["costs"] == []

    code, out, _ = cli(capsys, "run", *common, "--estimate")  # the table, at the stack's 16 vCPUs
    assert code == 0 and "Fargate Spot" in out and "at 16 vCPUs" in out and "us-east-1" in out


def test_after_a_run_status_compares_and_the_estimate_uses_recorded_timings(capsys, common, catalog_url):
    assert cli(capsys, "run", *common, "--executor", "inline", "--json")[0] == 0
    # The jobs took 1, 2 and 4 s per step (timings set so the figures are easy to follow).
    with Catalog.open(catalog_url) as catalog, catalog.transaction() as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.step, jobs.c.started_at).order_by(jobs.c.id)).all()
        taken: dict[str, list[float]] = {}
        for row in rows:
            seconds = (1.0, 2.0, 4.0)[len(taken.setdefault(row.step, []))]
            taken[row.step].append(seconds)
            finished = row.started_at + timedelta(seconds=seconds)
            conn.execute(jobs.update().where(jobs.c.id == row.id).values(finished_at=finished))

    code, out, _ = cli(capsys, "status", *common, "--json")

    costs = {c["step"]: c for c in json.loads(out)["costs"]}
    assert set(costs) == set(STEPS)
    for step in STEPS:
        actual = sum(taken[step])
        assert costs[step]["jobs"] == costs[step]["finished"] == 3
        assert costs[step]["estimate_vcpu_seconds"] == pytest.approx(3 * BENCH_SECONDS[step])
        assert costs[step]["actual_vcpu_seconds"] == pytest.approx(actual)
        assert costs[step]["actual_fargate_spot_usd"] == pytest.approx(
            actual * usd_per_vcpu_second() * (1 - US_EAST_1.spot_discount)
        )
    assert "estimate vs actual" in cli(capsys, "status", *common)[1]

    code, out, _ = cli(capsys, "run", *common, "--estimate", "--force", "--max-vcpus", "2", "--json")

    assert code == 0
    cost = json.loads(out)
    medians = {step: statistics.median(taken[step]) for step in STEPS}
    assert {s["step"]: s["basis"] for s in cost["steps"] if s["jobs"]} == dict.fromkeys(
        STEPS, "median of 3 recorded jobs"
    )
    want = expected(medians, 3, 2)
    assert {key: cost[key] for key in want} == pytest.approx(want)


def test_max_vcpus_below_one_is_a_usage_error(capsys, common):
    code, _, err = cli(capsys, "run", *common, "--estimate", "--max-vcpus", "0")

    assert code == 2 and "--max-vcpus" in err


# The panoramas the bench figures were measured on: stitch's 12288x6144, nadir's 4096x2048 (bench/README.md).
STITCH_BENCH_PIXELS = 12288 * 6144
NADIR_BENCH_PIXELS = 4096 * 2048


def basis(cost, step: str) -> str:
    return next(s.basis for s in cost.steps if s.step == step)


def seconds(cost, step: str) -> float:
    return next(s.seconds_per_job for s in cost.steps if s.step == step)


def test_before_any_run_stitch_scales_its_bench_figure_to_the_configured_panorama(project: Project):
    add_rig_shots(project.catalog, project.root, 2)
    settings = project.with_steps(stitch={**project.settings.steps["stitch"], "params": {"width": 1024}})

    cost = estimate(project.catalog, settings=settings)

    # 1024 wide and, by default, half as high; downstream steps copy or decode at a fraction: not scaled.
    assert seconds(cost, "stitch") == pytest.approx(
        BENCH_SECONDS["stitch"] * 1024 * 512 / STITCH_BENCH_PIXELS
    )
    assert basis(cost, "stitch") == "bench figure (2026-12-03) scaled to 0.524 Mpx"
    assert seconds(cost, "derive") == BENCH_SECONDS["derive"]
    assert basis(cost, "derive") == "bench figure (2026-12-03)"

    # The OpenCV stitcher's panorama size is the frames' business: the figure stays as measured.
    opencv = project.with_steps(stitch={"stitcher": "opencv"})
    cost = estimate(project.catalog, settings=opencv)
    assert seconds(cost, "stitch") == BENCH_SECONDS["stitch"]
    assert basis(cost, "stitch") == "bench figure (2026-12-03)"


def test_nadir_scales_its_bench_figure_to_each_360_image(project: Project):
    add_panoramas(project.catalog, project.root / "small", 2, size=(256, 128))
    add_panoramas(project.catalog, project.root / "large", 1, size=(1024, 512))
    settings = project.with_steps(nadir={"enabled": True})

    cost = estimate(project.catalog, steps=["nadir"], settings=settings)

    sizes = [256 * 128, 256 * 128, 1024 * 512]
    want = statistics.fmean(BENCH_SECONDS["nadir"] * p / NADIR_BENCH_PIXELS for p in sizes)
    assert seconds(cost, "nadir") == pytest.approx(want)
    assert basis(cost, "nadir") == "bench figure (2026-12-03) scaled to 0.0328-0.524 Mpx"


def test_status_compares_a_first_run_with_the_scaled_figure_the_estimate_gave(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    before = estimate(project.catalog, settings=project.settings)

    assert run(project.catalog, settings=project.settings, executor=executor).ok

    compared = {c.step: c for c in estimate_vs_actual(project.catalog, project.settings)}
    assert compared["stitch"].estimate == pytest.approx(2 * seconds(before, "stitch"))
    assert (
        compared["stitch"].basis
        == basis(before, "stitch")
        == "bench figure (2026-12-03) scaled to 0.0328 Mpx"
    )
    assert compared["stitch"].finished == 2 and compared["stitch"].actual > 0


def test_the_architecture_page_states_the_memory_per_vcpu_and_the_price_date_the_estimate_uses():
    page = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    per_vcpu = PARAMETERS["WorkerMemoryMiB"]["Default"] / 1024 / int(PARAMETERS["WorkerVcpu"]["Default"])

    stated = [float(n) for n in re.findall(r"(\d+(?:\.\d+)?) GB per vCPU", page)]
    stated += [float(n) for n in re.findall(r"(\d+(?:\.\d+)?) GiB per vCPU", page)]

    assert stated and set(stated) == {per_vcpu}, "a figure of memory per vCPU that the estimate does not use"
    assert f"`panopipe.aws.prices`, dated {US_EAST_1.as_of}" in page
    assert f"~{US_EAST_1.fargate_vcpu_hour:.4f} USD per vCPU-hour" in page
