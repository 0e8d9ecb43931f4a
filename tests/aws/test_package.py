"""The Lambda zip: built with pip for Lambda's platform, without OpenCV, Pillow or numpy, within budget."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from panopipe.aws.package import EXCLUDED, UNUSED, build_lambda_zip, cold_import

MB = 1_000_000


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    this_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    output = tmp_path_factory.mktemp("lambda") / "panopipe-lambda.zip"
    return build_lambda_zip(output, arch="arm64", python_version=this_python).path


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


def test_a_zip_for_another_python_carries_no_bytecode(tmp_path: Path):
    """Built on this Python for another runtime, the zip shipped pip's bytecode of this Python (347 files,
    3.9 MB), which Lambda never reads; it now carries none, and says so."""
    other = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"
    built = build_lambda_zip(tmp_path / "other.zip", arch="arm64", python_version=other)
    assert not built.bytecode
    assert not [name for name in zipfile.ZipFile(built.path).namelist() if name.endswith(".pyc")]


def test_a_zip_for_this_python_carries_its_bytecode(package: Path):
    tag = sys.implementation.cache_tag
    compiled = [name for name in zipfile.ZipFile(package).namelist() if name.endswith(".pyc")]
    assert compiled and all(f".{tag}." in name for name in compiled)
    assert any(name.startswith("panopipe/") for name in compiled)
    assert any(name.startswith("sqlalchemy/") for name in compiled)
