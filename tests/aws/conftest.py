"""The Lambda entry point configures the ``panopipe`` logger for the whole process, as it should in Lambda;
tests give every other test its logger back."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_panopipe_logger() -> Iterator[None]:
    logger = logging.getLogger("panopipe")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
