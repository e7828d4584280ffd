"""What every benchmark file shares: timing (medians over rounds, works taking turns), the
machine's load, and the table. Every benchmark file imports these from here (run.py imports
the others' rows; none of them imports run.py)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def median_seconds(work: Callable[[int], None], count: int, rounds: int) -> float:
    """Median over ``rounds`` of the time per item for ``count`` items."""
    work(-1)  # warm up
    samples = []
    for r in range(rounds):
        start = time.perf_counter()
        for i in range(count):
            work(r * count + i)
        samples.append((time.perf_counter() - start) / count)
    return statistics.median(samples)


def interleaved(works: dict[str, Callable[[int], None]], count: int, rounds: int
                ) -> dict[str, float]:
    """Median seconds per item of each work, the works taking turns round by round (so a
    machine busier in one moment does not favour one of them)."""
    for work in works.values():
        work(-1)  # warm up
    samples: dict[str, list[float]] = {name: [] for name in works}
    for r in range(rounds):
        order = list(works.items())
        for name, work in order if r % 2 == 0 else reversed(order):
            start = time.perf_counter()
            for i in range(count):
                work((r + 1) * 100_000 + i)
            samples[name].append((time.perf_counter() - start) / count)
    return {name: statistics.median(found) for name, found in samples.items()}


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes), to print beside the figures."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f}, {five:.1f}, {fifteen:.1f} on {os.cpu_count()} cores"


def table(rows: list[dict], why_missed: dict[str, str] | None = None) -> str:
    """The rows as a Markdown table; under it, why each missed target was missed (the entry of
    ``why_missed`` whose key starts the row's figure)."""
    lines = ["| figure | baseline (same run) | measured | ratio / value | target | met |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['baseline']} | {r['measured']} | {r['value']} | "
              f"{r['target']} | {'yes' if r['met'] else '**no**'} |" for r in rows]
    missed = [(r["figure"], why) for r in rows if not r["met"]
              for key, why in (why_missed or {}).items() if r["figure"].startswith(key)]
    if missed:
        lines += ["", "Missed targets, and why:", ""]
        lines += [f"- {figure.split('(')[0].strip()}: {why}." for figure, why in missed]
    return "\n".join(lines)
