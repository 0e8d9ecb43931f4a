"""Start-up: ``--help``, ``ls`` and ``show`` on a SQLite catalog load none of the heavy libraries, and
``--help`` not even SQLAlchemy (it opens no catalog).

Each case runs in a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from panopipe.catalog import Catalog, ImageRecord

HEAVY = ("PIL", "boto3", "botocore", "cv2", "numpy", "psycopg", "sqlalchemy")

SCRIPT = """
import json, sys
from panopipe.cli import main
code = main(sys.argv[1:])
heavy = sorted({name.partition(".")[0] for name in sys.modules} & set(HEAVY))
sys.stderr.write("\\n" + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""


def run_cli(*args: str) -> dict[str, object]:
    """Run the CLI with ``args`` in a fresh interpreter; its exit code and the heavy modules it loaded."""
    src = Path(__file__).parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    code = f"HEAVY = {HEAVY!r}\n{SCRIPT}"
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    return json.loads(result.stderr.splitlines()[-1])


@pytest.fixture(scope="module")
def sqlite_catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A SQLite catalog holding one image, and that image's id."""
    location = str(tmp_path_factory.mktemp("startup") / "c.db")
    with Catalog.open(location) as catalog:
        catalog.upsert_images(
            [ImageRecord(uri="/survey/R001/0001.jpg", lat=48.1, lon=11.5, captured_at=datetime.now(UTC))]
        )
        [image] = catalog.images()
    return location, image.id


@pytest.mark.parametrize("command", ["--help", "ls", "show"])
def test_command_loads_no_heavy_library(command: str, sqlite_catalog: tuple[str, str]):
    location, image_id = sqlite_catalog
    args = {
        "--help": ["--help"],
        "ls": ["ls", "--catalog", location, "--json"],
        "show": ["show", image_id[-12:-4], "--catalog", location],
    }[command]
    catalog = ["sqlalchemy"] if command != "--help" else []
    assert run_cli(*args) == {"code": 0, "heavy": catalog}


def test_planning_with_the_nadir_cap_on_loads_no_heavy_library(
    sqlite_catalog: tuple[str, str], tmp_path: Path
):
    """The cap's configuration (its fill, its logo's hash) is checked where planning runs: the event function
    included, which must not load numpy or OpenCV for it."""
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(logo)  # planning checks its structure, decodes no pixel
    config = tmp_path / "panopipe.toml"
    config.write_text(f'[steps.nadir]\nenabled = true\nfill = "#202020"\nlogo = "{logo}"\n', encoding="utf-8")

    result = run_cli("plan", "--catalog", sqlite_catalog[0], "--config", str(config), "--json")

    assert result == {"code": 0, "heavy": ["sqlalchemy"]}
