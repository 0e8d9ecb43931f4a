"""Fair comparisons for the benchmarks: every side measured alike, and the numbers a sceptic asks for.

``compare`` runs each side the same number of times, interleaved (the starting side rotates each round, so
no side always runs first or right after another), after untimed warm-up runs, and keeps every time. A side
that keeps nothing from one run to the next (an external tool that takes minutes, started afresh each run)
may be left out of the warm-up (``unwarmed``); the comparison's notes say so. A side
is a callable that either returns None (the whole call is timed) or returns the seconds of its own timed
part (so that per-run set-up, such as a fresh database or fresh copies of the files, is left out on every
side alike). The printed and JSON results give each side's median and spread (min-max), the median of the
pairwise (same-round) ratios against the first side, the load average before and after, and the CPU that
other processes took meanwhile, with a warning when the machine was not quiet. ``Report`` gathers a
script's comparisons and writes them with ``--json`` for ``run_all.py``.

Quiet means that other processes took less than a quarter of a core on average during the comparison: the
machine's busy CPU time (``/proc/stat``, the hypervisor's steal included) less that of the benchmark's own
processes (itself, its children and theirs, and the PostgreSQL server's processes, where its PostgreSQL
sides run). The load average is printed too, but it cannot tell: the benchmark's own processes count in it,
so an all-cores comparison on an otherwise idle 2-core machine ends at a load of 1.7-3. Without ``/proc``
(macOS), or for a comparison shorter than a second, the rule falls back to the load average before and
after, at most the core count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CORES = os.cpu_count() or 1
QUIET_OTHERS = 0.25
"""Other processes' CPU, in cores on average, above which a machine is not quiet."""
MIN_WINDOW_S = 1.0
"""The shortest time over which others' CPU is told: ``/proc`` counts in ticks of 10 ms per process."""
SERVICES = frozenset({"postgres"})
"""Names of the server processes whose CPU is the benchmark's own (its sides run there)."""
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Clock ticks per second, the unit of ``/proc``'s CPU times."""
Side = Callable[[], float | None]
"""A side of a comparison: returns None (the call is timed) or the seconds of the part it timed itself."""


def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def process_stat(pid: int | str) -> tuple[str, list[int]]:
    """The command name of process ``pid`` and the numeric fields of its ``/proc/PID/stat`` after that name
    (index 1: the parent's pid; 11-14: user and system time, then the same of the children it waited for, in
    ``TICKS``). OSError when it has ended."""
    text = Path(f"/proc/{pid}/stat").read_text()
    end = text.rindex(")")  # the name may hold parentheses and spaces
    fields = [int(field) if field.lstrip("-").isdigit() else 0 for field in text[end + 2 :].split()]
    return text[text.index("(") + 1 : end], fields


@dataclass(frozen=True)
class CpuSnapshot:
    """The clock, the machine's busy CPU seconds and the benchmark's own, at one moment."""

    wall: float
    busy: float
    own: float


def cpu_snapshot() -> CpuSnapshot | None:
    """Now's ``CpuSnapshot``; None without ``/proc``."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, line[1:9])
    busy = (user + nice + system + irq + softirq + steal) / TICKS
    parents: dict[int, list[int]] = {}
    seconds: dict[int, float] = {}
    own = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            name, fields = process_stat(entry.name)
        except OSError:  # it ended meanwhile: its parent's reaped-children times have it
            continue
        pid = int(entry.name)
        seconds[pid] = sum(fields[11:15]) / TICKS  # its own time and its waited-for children's
        if name in SERVICES:
            own += seconds[pid]
        else:
            parents.setdefault(fields[1], []).append(pid)
    tree = [os.getpid()]
    while tree:
        pid = tree.pop()
        own += seconds.get(pid, 0.0)
        tree += parents.get(pid, [])
    return CpuSnapshot(time.perf_counter(), busy, own)


def others_cores(before: CpuSnapshot | None, after: CpuSnapshot | None) -> float | None:
    """The CPU other processes took between two snapshots, in cores on average; None without ``/proc`` or
    over less than ``MIN_WINDOW_S`` (a comparison of a few milliseconds)."""
    if before is None or after is None or after.wall - before.wall < MIN_WINDOW_S:
        return None
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / (after.wall - before.wall))


def is_loaded(load_before: float, load_after: float, others: float | None) -> bool:
    """Whether figures measured so are not a quiet machine's (see the module's docstring)."""
    if others is not None:
        return others > QUIET_OTHERS
    return max(load_before, load_after) > CORES


def load_summary(load_before: float, load_after: float, others: float | None) -> str:
    """The printed line's end: load averages, others' CPU, and the warning when not quiet."""
    text = f"load average {load_before:.2f} before, {load_after:.2f} after ({CORES} cores)"
    if others is not None:
        text += f", other processes {others:.2f} cores"
    if is_loaded(load_before, load_after, others):
        text += "  WARNING: figures are not from a quiet machine"
    return text


@dataclass
class Comparison:
    """The times of each side (seconds per run, same rounds), for ``count`` units of work per run."""

    title: str
    unit: str
    count: float
    seconds: dict[str, list[float]]
    load_before: float
    load_after: float
    goal: str = ""
    notes: list[str] = field(default_factory=list)
    others_cores: float | None = None

    @property
    def reference(self) -> str:
        """The side the others are compared with: the first (panopipe's)."""
        return next(iter(self.seconds))

    def median(self, side: str) -> float:
        return statistics.median(self.seconds[side])

    def ratio(self, side: str) -> float:
        """Median over rounds of ``side``'s time / the reference's time (how many times faster the reference is)."""
        ours = self.seconds[self.reference]
        return statistics.median(theirs / own for own, theirs in zip(ours, self.seconds[side], strict=True))

    def rate(self, seconds: float) -> float:
        return self.count / seconds

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cores"] = CORES
        data["sides"] = {
            side: {
                "median_s": self.median(side),
                "min_s": min(times),
                "max_s": max(times),
                "median_rate": self.rate(self.median(side)),
                "ratio": self.ratio(side),
            }
            for side, times in self.seconds.items()
        }
        return data


def compare(
    sides: dict[str, Side],
    runs: int,
    warmup: int = 1,
    *,
    title: str,
    unit: str = "runs",
    count: float = 1,
    goal: str = "",
    notes: Sequence[str] = (),
    clock: Callable[[], float] = time.perf_counter,
    unwarmed: Collection[str] = (),
) -> Comparison:
    """Run the sides ``warmup`` times untimed (all but the ``unwarmed`` ones), then ``runs`` timed rounds,
    interleaved; print and return them."""
    load_before, cpu_before = load_average(), cpu_snapshot()
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            if name not in unwarmed:
                sides[name]()
    if warmup and (skipped := [name for name in names if name in unwarmed]):
        notes = [*notes, f"no warm-up run of: {', '.join(skipped)} (nothing kept from one run to the next)"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = clock()
            own = sides[name]()
            seconds[name].append(clock() - started if own is None else own)
    others = others_cores(cpu_before, cpu_snapshot())
    comparison = Comparison(
        title, unit, count, seconds, load_before, load_average(), goal, list(notes), others
    )
    print_comparison(comparison)
    return comparison


def print_comparison(comparison: Comparison) -> None:
    c = comparison
    runs = len(c.seconds[c.reference])
    print(f"\n{c.title} ({runs} interleaved runs each; {c.count:,g} {c.unit} per run)")
    if len(c.seconds) > 1:
        print(f"ratio: the median of each round's (side's time / {c.reference}'s time)")
    print(f"{'side':<52}{'median s':>10}{'min-max s':>18}{c.unit + '/s':>14}{'ratio':>9}")
    for side, times in c.seconds.items():
        ratio = "" if side == c.reference else f"{c.ratio(side):.2f}x"
        print(
            f"{side:<52}{c.median(side):>10.4g}{f'{min(times):.4g}-{max(times):.4g}':>18}"
            f"{c.rate(c.median(side)):>14,.1f}{ratio:>9}"
        )
    if c.goal:
        print(f"goal: {c.goal}")
    for note in c.notes:
        print(f"note: {note}")
    print(load_summary(c.load_before, c.load_after, c.others_cores))


def parse_args(
    doc: str,
    sizes: dict[str, tuple[int, int]],
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    runs: tuple[int, int] = (7, 3),
) -> argparse.Namespace:
    """Options every benchmark has (``--quick``, ``--runs``, ``--warmup``, ``--json``) and its ``sizes``
    (option name: full-size default, ``--quick`` default); ``runs`` are the defaults of ``--runs``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help=f"small sizes and {runs[1]} runs: a check in seconds"
    )
    parser.add_argument(
        "--runs", type=int, help=f"timed runs of each side (default {runs[0]}, {runs[1]} with --quick)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    for name, (full, quick) in sizes.items():
        parser.add_argument(f"--{name}", type=int, help=f"default {full:,} ({quick:,} with --quick)")
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    for name, (full, quick) in sizes.items():
        key = name.replace("-", "_")
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.runs is None:
        args.runs = runs[1] if args.quick else runs[0]
    return args


class Report:
    """A script's comparisons and notes, with the load at its start and end; ``--json`` output."""

    def __init__(self, args: argparse.Namespace, script: str) -> None:
        self.args, self.script = args, script
        self.comparisons: list[Comparison] = []
        self.notes: list[str] = []
        self.load_before, self.cpu_before = load_average(), cpu_snapshot()
        self.complete = True

    def compare(self, sides: dict[str, Side], **options: Any) -> Comparison:
        """``compare`` with the script's runs and warm-up; the result is kept for the JSON output."""
        comparison = compare(sides, self.args.runs, self.args.warmup, **options)
        self.comparisons.append(comparison)
        return comparison

    def note(self, text: str) -> None:
        print(text)
        self.notes.append(text)

    def unavailable(self, side: str, reason: str) -> None:
        self.note(f"{side}: unavailable ({reason})")

    def close(self) -> None:
        load_after, others = load_average(), others_cores(self.cpu_before, cpu_snapshot())
        print(f"\n{self.script}: {load_summary(self.load_before, load_after, others)}")
        if self.args.json:
            self.args.json.parent.mkdir(parents=True, exist_ok=True)
            data = {
                "script": self.script,
                "complete": self.complete,
                "quick": self.args.quick,
                "runs": self.args.runs,
                "warmup": self.args.warmup,
                "cores": CORES,
                "load_before": self.load_before,
                "load_after": load_after,
                "others_cores": others,
                "argv": sys.argv[1:],
                "notes": self.notes,
                "comparisons": [c.to_dict() for c in self.comparisons],
            }
            self.args.json.write_text(json.dumps(data, indent=1) + "\n")


@contextmanager
def report(args: argparse.Namespace, script: str) -> Iterator[Report]:
    """A ``Report`` printed and written at the end of the ``with`` block, even after an error (then marked
    incomplete)."""
    started = Report(args, script)
    try:
        yield started
    except BaseException:
        started.complete = False
        raise
    finally:
        started.close()


__all__ = [
    "CORES",
    "MIN_WINDOW_S",
    "QUIET_OTHERS",
    "SERVICES",
    "TICKS",
    "Comparison",
    "CpuSnapshot",
    "Report",
    "Side",
    "compare",
    "cpu_snapshot",
    "is_loaded",
    "load_average",
    "load_summary",
    "others_cores",
    "parse_args",
    "print_comparison",
    "process_stat",
    "report",
]
