"""The project_config table's owner: versions in order, exactly as pushed, and two pushes at once."""

from __future__ import annotations

import threading

import pytest

from panopipe.catalog import Catalog
from panopipe.catalog import project_config as config_ops
from panopipe.config import Settings, project_settings
from panopipe.errors import CatalogError, ConfigError, NotFoundError
from panopipe.steps.fingerprint import fingerprint


def test_versions_keep_content_author_and_reason(catalog: Catalog):
    assert catalog.project_config() is None and catalog.project_config_history() == []
    content = {"steps": {"stitch": {"rig": {"cameras": [{"yaw_deg": 90.5}]}}}, "panopipe": {"project": "ü"}}
    first = catalog.push_project_config(content, author="ana", reason="first")
    second = catalog.push_project_config({}, author="bo", reason="defaults")
    assert [v.version for v in catalog.project_config_history()] == [1, 2]
    assert catalog.project_config() == second and catalog.project_config(1) == first
    assert first.content == content and first.content_hash == fingerprint(content)
    with pytest.raises(NotFoundError, match="versions are 1 to 2"):
        catalog.project_config(3)
    with pytest.raises(ConfigError, match="needs a reason"):
        catalog.push_project_config({}, author="c", reason=" ")


def test_of_two_pushes_at_once_the_second_fails_and_says_so(postgres_url: str):
    errors: list[Exception] = []
    with Catalog.open(postgres_url) as first, Catalog.open(postgres_url) as second:

        def push_too() -> None:
            try:
                second.push_project_config({"steps": {}}, author="bo", reason="at the same time")
            except CatalogError as exc:
                errors.append(exc)

        with first.transaction() as conn:
            config_ops.push(conn, {}, author="ana", reason="first")  # version 1, not committed yet
            racer = threading.Thread(target=push_too)
            racer.start()
            racer.join(1.0)  # it waits on the uncommitted version 1
        racer.join(10)
        (error,) = errors
        assert "another push stored version 1" in str(error)
        assert [v.author for v in first.project_config_history()] == ["ana"]


def test_a_version_this_panopipe_cannot_read_is_named(catalog: Catalog):
    catalog.push_project_config(
        {"ingest": {"shot_tolerance": 1}}, author="ana", reason="from a newer panopipe"
    )
    with pytest.raises(
        ConfigError, match=r"version 1 in the catalog: unknown key in \[ingest\]: 'shot_tolerance'"
    ):
        project_settings(catalog, Settings())


def test_a_version_with_a_value_of_the_wrong_type_is_named(catalog: Catalog):
    catalog.push_project_config({"ingest": {"shot_tolerance_s": "0.05"}}, author="ana", reason="by hand")
    with pytest.raises(
        ConfigError,
        match=r"version 1 in the catalog: \[ingest\]: shot_tolerance_s must be a number, 0 or more, got '0.05'",
    ):
        project_settings(catalog, Settings())
