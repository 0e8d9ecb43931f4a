"""The Lambda's JSON log lines survive the CLI's logging set-up in the same process."""

from __future__ import annotations

import json
import logging

import pytest

from panopipe.aws.logging import bind_request, configure_json_logging
from panopipe.cli import render


def test_json_logging_keeps_info_lines_after_the_cli_configured_logging(
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure_json_logging()
    render.configure()  # what every CLI command does: the panopipe logger's level back to NOTSET (warnings)
    configure_json_logging()
    bind_request("req-log")
    logging.getLogger("panopipe.aws").info("handled", extra={"processed": 3})
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert [(line["message"], line["request_id"], line["processed"]) for line in lines] == [
        ("handled", "req-log", 3)
    ]
