"""Fixtures of the end-to-end tests: moto's server with AWS Batch (see :mod:`tests.pipeline.batch_world`)."""

from tests.pipeline.batch_world import moto_server, world  # noqa: F401 - fixtures
from tests.storage.conftest import aws_env  # noqa: F401 - a fixture of world
