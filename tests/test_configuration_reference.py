"""docs/configuration.md is generated from the declared keys, and those declarations are what validation and
the steps use."""

from __future__ import annotations

from pathlib import Path

import pytest

from panopipe.catalog import Catalog
from panopipe.config import IngestRules, Settings, declared_keys, load_settings
from panopipe.config_reference import reference
from panopipe.errors import ConfigError
from panopipe.pipeline.config import PIPELINE_KEYS, build_pipeline
from panopipe.steps.base import PipelineContext
from panopipe.steps.registry import STEP_TYPES

DOCS = Path(__file__).parents[1] / "docs" / "configuration.md"


def test_the_reference_page_is_generated_from_the_code():
    assert reference() == DOCS.read_text(encoding="utf-8"), (
        "docs/configuration.md is stale: run `python -m panopipe.config_reference > docs/configuration.md`"
    )


def test_every_section_and_key_is_documented():
    page = reference()
    tables = {
        "panopipe": declared_keys(Settings),
        "ingest": declared_keys(IngestRules),
        "steps.pipeline": PIPELINE_KEYS,
        **{f"steps.{name}": step.parameters for name, step in STEP_TYPES.items()},
    }
    for table, keys in tables.items():
        section = page.split(f"## [{table}]\n", 1)[1].split("\n## ", 1)[0]
        assert keys and all(f"| `{key.name}` |" in section for key in keys), table


@pytest.mark.parametrize("name", sorted(STEP_TYPES))
def test_declared_defaults_are_the_defaults_a_step_uses(name: str, tmp_path: Path):
    step = STEP_TYPES[name]
    context = PipelineContext("p", str(tmp_path / "out"))
    explicit = {key.name: key.default for key in step.parameters if key.default is not None}
    assert step({}, context).params_hash == step(explicit, context).params_hash
    with pytest.raises(ConfigError, match=rf"unknown key in \[steps.{name}\]: 'colour'"):
        step({"colour": 1}, context)


def test_declared_keys_are_the_keys_a_file_may_set(tmp_path: Path):
    file = tmp_path / "panopipe.toml"
    file.write_text("[ingest]\nshot_tolerance = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'shot_tolerance_s'"):
        load_settings(file)
    file.write_text("[steps.pipeline]\nretry = 1\n", encoding="utf-8")
    with (
        Catalog.open(tmp_path / "c.db") as catalog,
        pytest.raises(ConfigError, match="did you mean 'retries'"),
    ):
        build_pipeline(catalog, load_settings(file))
