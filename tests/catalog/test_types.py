"""Generated ids and timestamps."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from panopipe.catalog.types import UTCDateTime, new_id, new_ids


def test_ids_are_unique_time_ordered_uuid7():
    first = new_ids(10_000)
    time.sleep(0.002)
    later = new_id()
    assert len(set(first)) == 10_000
    for text in [*first[:100], later]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 7, uuid.RFC_4122)
    assert max(first) < later
    millis = int(later.replace("-", "")[:12], 16)
    assert abs(millis / 1000 - time.time()) < 5


def test_utc_datetime_refuses_naive_and_normalises_zones():
    column = UTCDateTime()
    local = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert column.process_bind_param(local, None) == datetime(2024, 5, 1, 8, 0)  # type: ignore[arg-type]
    assert column.process_result_value(datetime(2024, 5, 1, 8, 0), None) == local  # type: ignore[arg-type]
    assert column.process_result_value(datetime(2024, 5, 1, 8, 0), None).tzinfo == UTC  # type: ignore[union-attr,arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        column.process_bind_param(datetime(2024, 5, 1), None)  # type: ignore[arg-type]
