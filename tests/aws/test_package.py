"""The Lambda zip: built with pip for Lambda's platform, without OpenCV, Pillow or numpy, within budget."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from panopipe.aws.package import EXCLUDED, UNUSED, build_lambda_zip, cold_import

MB = 1_000_000


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lambda_zip(tmp_path_factory.mktemp("lambda") / "panopipe-lambda.zip", arch="arm64").path


def test_the_zip_holds_the_handler_and_its_dependencies_but_no_imaging_libraries(package: Path):
    names = zipfile.ZipFile(package).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {"panopipe", "sqlalchemy", "alembic", "psycopg", "psycopg_binary"} <= top
    assert not top & {*EXCLUDED, "boto3", "botocore", "typer", "rich"}
    assert any("aarch64" in name for name in names if name.startswith("psycopg_binary"))
    assert not [name for name in names if name.startswith(UNUSED)]
    assert package.stat().st_size <= 15 * MB


def test_the_handler_imports_with_imaging_libraries_blocked(package: Path):
    _, modules = cold_import(package)  # raises if any blocked module is imported
    assert "panopipe" in modules and not set(modules) & {*EXCLUDED, "boto3", "typer"}
