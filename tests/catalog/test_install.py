"""Installing without a C compiler: the SQLite reader of ``db migrate`` falls back to pure Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from panopipe.catalog import Catalog

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_a_wheel_builds_without_a_compiler_and_moves_with_the_python_reader(
    tmp_path: Path, postgres_url: str
):
    project = tmp_path / "project"  # a copy: building in the work tree would leave build/ and egg-info there
    shutil.copytree(
        ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    )
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            ".",
        ],
        cwd=project,
        env={**os.environ, "CC": "/bin/false"},  # any compilation fails
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("panopipe-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert {"panopipe/catalog/transfer/move.py", "panopipe/catalog/transfer/python_reader.py"} <= set(names)
    assert "panopipe/cli/db_migrate.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd"))]

    source = tmp_path / "catalog.db"
    Catalog.open(source).close()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import panopipe.catalog.transfer as transfer\n"
        "assert transfer.__file__.startswith(sys.argv[1]), transfer.__file__\n"
        "from panopipe.cli import main\n"
        "sys.exit(main(['db', 'migrate', '--json', '--catalog', sys.argv[2], '--to', sys.argv[3]]))\n"
    )
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    moved = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "site"), str(source), postgres_url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["ok"] and report["reader"] == "python"
    assert "pure-Python reader" in report["note"] and "slower" in report["note"]
    assert "compiled SQLite reader is not installed" in " ".join(moved.stderr.split())
