"""The whole AWS deployment as one CloudFormation template, built in Python (no CDK, no Terraform).

:func:`build_template` returns it as a dict; ``panopipe cloud template`` prints it and ``panopipe cloud deploy``
deploys it (:mod:`panopipe.aws.deploy`). One module per group of resources: ``storage`` (bucket, queues),
``function`` (Lambda), ``database`` (RDS, proxy), ``network`` (VPC), ``batch`` (workers), ``alarms``;
``template`` puts them together.
"""

from panopipe.aws.stack.batch import ATTEMPTS, RETRY_ON, WORKER_COMMAND, worker_environment
from panopipe.aws.stack.function import function_environment
from panopipe.aws.stack.parameters import PARAMETERS
from panopipe.aws.stack.template import (
    CATALOG_OUTPUTS,
    DESCRIPTION,
    OUTPUTS,
    REPLACING_LOSES,
    build_template,
)

__all__ = [
    "ATTEMPTS",
    "CATALOG_OUTPUTS",
    "DESCRIPTION",
    "OUTPUTS",
    "PARAMETERS",
    "REPLACING_LOSES",
    "RETRY_ON",
    "WORKER_COMMAND",
    "build_template",
    "function_environment",
    "worker_environment",
]
