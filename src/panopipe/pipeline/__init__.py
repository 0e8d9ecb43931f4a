"""The reprocessing engine: plan what is stale, run it, check outputs for drift, report status."""

from panopipe.pipeline.config import Pipeline, load_pipeline
from panopipe.pipeline.planner import Plan, PlanItem, plan
from panopipe.pipeline.runner import Failure, RunReport, run
from panopipe.steps.fingerprint import canonical_json, fingerprint

__all__ = [
    "Failure",
    "Pipeline",
    "Plan",
    "PlanItem",
    "RunReport",
    "canonical_json",
    "fingerprint",
    "load_pipeline",
    "plan",
    "run",
]
