"""Benchmark: start-up of the command line, this tree against a base commit (default ``main``).

Times ``panopipe --help`` and ``panopipe ls`` on the demo catalog (built once under ``bench/out/startup-demo``
by this tree's ``panopipe demo``), each run a fresh interpreter doing what the console script does. "before"
is the base commit's ``src`` (``git archive BASE src``, extracted to ``bench/out/base-src``, with this tree's
compiled SQLite reader), "after" this tree's; runs of the two alternate. Prints the median and the range of
each (wall and CPU seconds), and the ratio of the medians. The goal is ``--help`` under 0.4 s and at least 4x
faster than before.

    python bench/bench_startup.py [--runs 15] [--base main]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
AFTER_SRC = ROOT / "src"
GOAL_HELP_S = 0.4
GOAL_RATIO = 4.0
ENTRY = "from panopipe.cli import run; run()"  # what the ``panopipe`` console script runs


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
        for compiled in (AFTER_SRC / "panopipe" / "catalog").glob("_sqlite_copy*.so"):
            shutil.copy2(compiled, folder / "src" / "panopipe" / "catalog")
        marker.write_text(commit)
    return folder / "src"


def demo_catalog(shots: int) -> Path:
    """The demo's catalog, made by this tree's ``panopipe demo`` unless it is there already."""
    folder = OUT / "startup-demo"
    catalog = folder / "panopipe.db"
    if not catalog.is_file():
        print(f"building the demo catalog in {folder} ({shots} shots)...", file=sys.stderr)
        cli(AFTER_SRC, ["demo", "--folder", str(folder), "--shots", str(shots), "--json"])
    return catalog


def cli(src: Path, args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one ``panopipe ARGS`` run with the package from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command and tree")
    parser.add_argument("--base", default="main", help="the git commit to compare with")
    parser.add_argument("--shots", type=int, default=4, help="shots of the demo catalog, when it is built")
    options = parser.parse_args()
    trees = {"before": base_source(options.base), "after": AFTER_SRC}
    catalog = demo_catalog(options.shots)
    commands = {"--help": ["--help"], "ls": ["ls", "--catalog", str(catalog)]}
    for args in commands.values():  # warm the file cache and the bytecode of both trees
        for src in trees.values():
            cli(src, args)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {(c, t): [] for c in commands for t in trees}
    for run in range(options.runs):
        order = list(trees) if run % 2 == 0 else list(reversed(trees))
        for command, args in commands.items():
            for tree in order:
                times[command, tree].append(cli(trees[tree], args))
    print(f"{options.runs} interleaved runs; before: {options.base}, after: this tree; seconds")
    medians: dict[tuple[str, str, int], float] = {}
    for command in commands:
        for tree in trees:
            line = f"  panopipe {command:<6} {tree:<6}"
            for index, what in enumerate(("wall", "CPU")):
                series = [sample[index] for sample in times[command, tree]]
                medians[command, tree, index] = statistics.median(series)
                line += f"  {what} median {medians[command, tree, index]:.3f} ({min(series):.3f}-{max(series):.3f})"
            print(line)
        ratios = [medians[command, "before", i] / medians[command, "after", i] for i in (0, 1)]
        print(f"  panopipe {command:<6} ratio   wall {ratios[0]:.1f}x, CPU {ratios[1]:.1f}x faster")
    # On a busy machine the wall time includes waiting for a core; the CPU time is what the command costs.
    print(
        f"goal (--help under {GOAL_HELP_S} s and {GOAL_RATIO:.0f}x faster), load average {os.getloadavg()[0]:.1f}:"
    )
    for index, what in enumerate(("wall", "CPU")):
        seconds = medians["--help", "after", index]
        ratio = medians["--help", "before", index] / seconds
        verdict = "met" if seconds < GOAL_HELP_S and ratio >= GOAL_RATIO else "NOT met"
        print(f"  by {what} time: {verdict} ({seconds:.3f} s, {ratio:.1f}x)")


if __name__ == "__main__":
    main()
