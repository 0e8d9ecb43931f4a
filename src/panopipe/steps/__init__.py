"""Processing steps: stitch, nadir, apply-metadata, derive, publish (see :mod:`panopipe.steps.base`)."""

from panopipe.steps.apply_metadata import ApplyMetadataStep
from panopipe.steps.base import JobOutcome, JobSpec, Output, PipelineContext, Step, Subject, Upstream
from panopipe.steps.derive import DeriveStep
from panopipe.steps.nadir import NadirStep
from panopipe.steps.publish import PublishStep
from panopipe.steps.registry import STEP_TYPES, build_steps, execute_job
from panopipe.steps.stitch import StitchStep

__all__ = [
    "STEP_TYPES",
    "ApplyMetadataStep",
    "DeriveStep",
    "JobOutcome",
    "JobSpec",
    "NadirStep",
    "Output",
    "PipelineContext",
    "PublishStep",
    "Step",
    "StitchStep",
    "Subject",
    "Upstream",
    "build_steps",
    "execute_job",
]
