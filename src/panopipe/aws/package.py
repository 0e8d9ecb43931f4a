"""The Lambda deployment zip: the handler's runtime dependencies for Lambda's Linux, plus panopipe's source.

Bundled: SQLAlchemy, Alembic and psycopg (binary), as manylinux wheels for the chosen architecture and
Python. Not bundled: OpenCV, Pillow, simplejpeg and numpy (the handler plans jobs, it never touches pixels,
and their imports are lazy), Typer and rich (no CLI in Lambda), and boto3/botocore: the Lambda Python runtime
provides them, and botocore alone would take most of the 15 MB budget. Pin boto3 in a layer if an API newer
than the runtime's is ever needed.
"""

from __future__ import annotations

import compileall
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import panopipe
from panopipe.errors import ConfigError

PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
REQUIREMENTS = ("sqlalchemy>=2.0.30", "alembic>=1.13", "psycopg[binary]>=3.1")
EXCLUDED = ("cv2", "PIL", "simplejpeg", "numpy")
UNUSED = (
    "sqlalchemy/testing",
    "sqlalchemy/ext/mypy",
    "sqlalchemy/ext/asyncio",
    "sqlalchemy/dialects/mysql",
    "sqlalchemy/dialects/oracle",
    "sqlalchemy/dialects/mssql",
    "alembic/testing",
    "alembic/templates",
    "bin",
    "panopipe/cli",
    "panopipe/aws/stack",
    "panopipe/aws/deploy.py",
    "panopipe/catalog/transfer",
    "panopipe/export",
    "panopipe/routes",
    "panopipe/qc/checks.py",
    "panopipe/qc/fix.py",
    "panopipe/qc/geometry.py",
    "panopipe/qc/run.py",
    "panopipe/qc/synthetic.py",
    "panopipe/config_reference.py",
    "panopipe/project_config.py",
    "panopipe/demo.py",
    "panopipe/dev.py",
    "panopipe/sync.py",
)
"""Parts of the dependencies, and of panopipe, the handler never imports (test kits, a mypy plugin,
SQLAlchemy's asyncio extension (panopipe's database calls are synchronous) and the dialects of databases
panopipe does not run on (MySQL, Oracle, SQL Server: 0.6 MB), project templates; the command
line, the stack builder, the SQLite -> PostgreSQL move, exports, track QC and routes (only the flag names,
which selections check), the demo, local AWS parity and sync)."""
HANDLER = "panopipe.aws.lambda_handler.handler"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class LambdaPackage:
    """A built deployment zip: where it is, its size, how many files, and the handler to configure."""

    path: Path
    size: int
    files: int
    arch: str
    bytecode: bool
    """Whether the zip carries bytecode for its runtime's Python (only an interpreter of that version writes it)."""
    handler: str = HANDLER

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "size": self.size,
            "files": self.files,
            "arch": self.arch,
            "bytecode": self.bytecode,
            "handler": self.handler,
        }


def build_lambda_zip(output: Path, *, arch: str = "x86_64", python_version: str = "3.11") -> LambdaPackage:
    """Build the deployment zip at ``output`` for Lambda on ``arch`` (``x86_64`` or ``arm64``).

    Needs pip and access to the package index (or pip's cache). The zip is reproducible: entries are sorted
    and carry a fixed time.
    """
    if arch not in PLATFORMS:
        raise ConfigError(f"unknown architecture {arch!r}: choose one of {', '.join(PLATFORMS)}")
    with tempfile.TemporaryDirectory(prefix="panopipe-lambda-") as tmp:
        root = Path(tmp)
        _pip_install(root, PLATFORMS[arch], python_version)
        shutil.copytree(
            Path(panopipe.__file__).parent,
            root / "panopipe",
            ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"),
        )
        for unused in UNUSED:
            if (root / unused).is_dir():
                shutil.rmtree(root / unused)
            else:
                (root / unused).unlink(missing_ok=True)
        present = [name for name in EXCLUDED if (root / name).exists()]
        if present:
            raise ConfigError(f"the Lambda package must not contain {', '.join(present)}")
        bytecode = _compile(root, python_version)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        output.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in files:
                info = zipfile.ZipInfo(path.relative_to(root).as_posix(), _ZIP_TIME)
                info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return LambdaPackage(output, output.stat().st_size, len(files), arch, bytecode)


def import_blocker(blocked: tuple[str, ...] = EXCLUDED) -> str:
    """Python source that makes every later import of a module of ``blocked`` (or below it) raise
    :class:`ImportError`, as the Lambda runtime would without them: the first lines of a script run in a fresh
    interpreter."""
    return (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {blocked!r}: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )


def cold_import(
    package: Path, *, blocked: tuple[str, ...] = EXCLUDED, runs: int = 1
) -> tuple[list[float], list[str]]:
    """Import the handler from the unzipped ``package`` in ``runs`` fresh, isolated interpreters (``python -I``,
    only the package on ``sys.path``, ``blocked`` modules refused); the seconds each took (the first one reads
    the freshly unzipped files from disk) and the top-level modules loaded."""
    code = (
        import_blocker(blocked) + "import sys, time\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "started = time.perf_counter()\n"
        f"import {HANDLER.rpartition('.')[0]}\n"
        "print(time.perf_counter() - started)\n"
        "print(' '.join(sorted({m.partition('.')[0] for m in sys.modules})))\n"
    )
    with tempfile.TemporaryDirectory(prefix="panopipe-lambda-") as tmp:
        with zipfile.ZipFile(package) as archive:
            archive.extractall(tmp)
        timings = []
        for _ in range(runs):
            result = subprocess.run(
                [sys.executable, "-I", "-c", code, tmp], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise ConfigError(
                    f"the handler does not import from {package}: {result.stderr.strip()[-2000:]}"
                )
            seconds, modules = result.stdout.splitlines()
            timings.append(float(seconds))
    return timings, modules.split()


def _compile(root: Path, python_version: str) -> bool:
    """Ship bytecode (whether it did): /var/task is read-only, so without it every cold start compiles every
    module.

    Hash-checked (``unchecked-hash``) so that the zip's file times do not matter; only this interpreter's
    version can write it, so it is skipped when that is not the Lambda runtime's (pip compiles nothing either:
    another version's bytecode is dead weight that Lambda never reads).
    """
    if f"{sys.version_info.major}.{sys.version_info.minor}" != python_version:
        return False
    compileall.compile_dir(
        root, quiet=2, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    return True


def _pip_install(target: Path, platform: str, python_version: str) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--platform", platform, "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp", "--no-compile", *REQUIREMENTS,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"pip could not fetch the Lambda dependencies: {result.stderr.strip()[-2000:]}")


__all__ = [
    "EXCLUDED",
    "HANDLER",
    "PLATFORMS",
    "REQUIREMENTS",
    "UNUSED",
    "LambdaPackage",
    "build_lambda_zip",
    "cold_import",
    "import_blocker",
]
