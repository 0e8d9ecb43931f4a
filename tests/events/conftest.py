"""Fixtures for the event tests: sample payloads from tests/data/events/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EVENTS_DIR = Path(__file__).resolve().parents[1] / "data" / "events"


@pytest.fixture
def load_event() -> Callable[[str], Any]:
    """Return a loader: ``load_event("powertools-python/s3Event.json")`` -> the parsed JSON document."""

    def load(name: str) -> Any:
        return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))

    return load
