"""Benchmark: start-up of the command line, this tree against a base commit (default: the last eager CLI).

Times ``panopipe --help`` and ``panopipe ls`` on the demo catalog (built once per tree by that tree's
``panopipe demo``, under ``bench/out/startup-demo-after`` and ``-before``: the same shots, each at its tree's
schema), each run a fresh interpreter doing what the console script does. "before"
is the base commit's ``src`` (``git archive BASE src``, extracted to ``bench/out/base-src``, with this tree's
compiled SQLite reader put where the base keeps its source), "after" this tree's; the runs of the two are
interleaved (``bench/fair.py``), by wall time and by CPU time (user + system of the child). The goal is
``--help`` under 0.4 s and at least 4x faster than before.

    python bench/bench_startup.py [--quick] [--runs 15] [--base f2b9d1c] [--json out.json]
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import fair

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
AFTER_SRC = ROOT / "src"
GOAL_HELP_S = 0.4
GOAL_RATIO = 4.0
ENTRY = "from panopipe.cli import run; run()"  # what the ``panopipe`` console script runs
BASE = "f2b9d1c"
"""The last commit whose command line imported the whole library at start-up."""


def base_source(base: str) -> Path:
    """``src`` of the commit ``base``, extracted once per commit."""
    commit = subprocess.run(
        ["git", "rev-parse", base], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    folder = OUT / "base-src"
    marker = folder / "COMMIT"
    if not marker.is_file() or marker.read_text() != commit:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        for source in (folder / "src").rglob("_sqlite_copy.c"):
            for compiled in AFTER_SRC.rglob("_sqlite_copy*.so"):
                shutil.copy2(compiled, source.parent)
        marker.write_text(commit)
    return folder / "src"


def demo_catalog(name: str, src: Path, shots: int) -> Path:
    """The demo's catalog made by the ``panopipe demo`` of ``src`` (each tree reads its own: a catalog at a later
    schema is refused by an earlier panopipe), unless it is there already."""
    folder = OUT / f"startup-demo-{name}"
    catalog = folder / "panopipe.db"
    if not catalog.is_file():
        print(f"building the demo catalog in {folder} ({shots} shots)...", file=sys.stderr)
        cli(src, ["demo", "--folder", str(folder), "--shots", str(shots), "--json"])
    return catalog


def cli(src: Path, args: list[str]) -> None:
    """One ``panopipe ARGS`` run with the package from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
    )


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--base", default=BASE, help=f"the git commit to compare with (default {BASE})")
        parser.add_argument(
            "--shots", type=int, default=4, help="shots of the demo catalog, when it is built"
        )

    args = fair.parse_args(__doc__, {}, extra=options)
    if args.runs == 7 and not args.quick:
        args.runs = 15  # each run is a fraction of a second: more rounds for a steadier median
    trees = {
        "panopipe (this tree)": ("after", AFTER_SRC),
        f"panopipe before ({args.base})": ("before", base_source(args.base)),
    }
    catalogs = {name: demo_catalog(tag, src, args.shots) for name, (tag, src) in trees.items()}
    commands = {
        "--help": {name: ["--help"] for name in trees},
        "ls": {name: ["ls", "--catalog", str(catalogs[name])] for name in trees},
    }
    with fair.report(args, "startup") as report:
        for command, argvs in commands.items():
            sides = {name: partial(cli, src, argvs[name]) for name, (_, src) in trees.items()}
            for what, clock in (("wall", None), ("CPU", children_cpu)):
                comparison = report.compare(
                    sides,
                    title=f"panopipe {command}, {what} seconds",
                    unit="runs",
                    count=1,
                    goal=f"under {GOAL_HELP_S} s and {GOAL_RATIO:.0f}x faster" if command == "--help" else "",
                    **({"clock": clock} if clock else {}),
                )
                if command == "--help":
                    seconds, ratio = (
                        comparison.median(comparison.reference),
                        comparison.ratio(f"panopipe before ({args.base})"),
                    )
                    verdict = "met" if seconds < GOAL_HELP_S and ratio >= GOAL_RATIO else "NOT met"
                    report.note(f"--help by {what} time: goal {verdict} ({seconds:.3f} s, {ratio:.1f}x)")


if __name__ == "__main__":
    main()
