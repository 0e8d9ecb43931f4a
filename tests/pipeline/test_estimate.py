"""``panopipe run --estimate`` and the cost part of ``panopipe status``, through the command line, with the
expected figures worked out here from the price table, the stack's defaults and the recorded job timings."""

from __future__ import annotations

import json
import math
import statistics
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.pipeline.captures import panorama_project

from panopipe.aws.prices import US_EAST_1
from panopipe.aws.stack.parameters import PARAMETERS
from panopipe.catalog import Catalog
from panopipe.catalog.schema import jobs
from panopipe.cli import main
from panopipe.pipeline.estimate import BENCH_SECONDS

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
