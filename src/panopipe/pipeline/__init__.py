"""The reprocessing engine: plan what is stale, run it, check outputs for drift, report status.

Units: a rig shot is one subject (``shot:<id>``) for every step; a single 360° image whose projection is
already equirectangular is its own subject (``image:<id>``) and skips ``stitch``.
"""

from panopipe.pipeline.config import Pipeline, load_pipeline, output_prefixes, refuse_sources_in_outputs
from panopipe.pipeline.overwrite import refuse_overwrite
from panopipe.pipeline.planner import Plan, PlanItem, plan
from panopipe.pipeline.report import write_html_report
from panopipe.pipeline.runner import Failure, Progress, RunReport, run
from panopipe.pipeline.status import FAILURES_LIMIT, FailureGroup, JobFailure, Status, status
from panopipe.pipeline.verify import Drift, verify
from panopipe.steps.fingerprint import canonical_json, fingerprint

__all__ = [
    "FAILURES_LIMIT",
    "Drift",
    "Failure",
    "FailureGroup",
    "JobFailure",
    "Pipeline",
    "Plan",
    "PlanItem",
    "Progress",
    "RunReport",
    "Status",
    "canonical_json",
    "fingerprint",
    "load_pipeline",
    "output_prefixes",
    "plan",
    "refuse_overwrite",
    "refuse_sources_in_outputs",
    "run",
    "status",
    "verify",
    "write_html_report",
]
