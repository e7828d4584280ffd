"""What deciding who a name is costs on the decision path: ``same_person`` on names never seen
before (three TR39 skeletons each, from ICU) and on names seen before (cached), against the
comparison the kit made before (NFKC and case folding only), measured in the same run.

    .venv/bin/python benchmarks/identity.py
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hitl_kit import identity  # noqa: E402

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZабвгдеёжзийклмнопрстуαβγδεζηθικλμ"


def names(count: int, seed: int) -> list[str]:
    chooser = random.Random(seed)
    return ["".join(chooser.choice(LETTERS) for _ in range(chooser.randint(3, 12))) + f" {i}"
            for i in range(count)]


def folded(name: str) -> str:
    """The baseline: the comparison before identity.py (NFKC, case folded, spaces collapsed)."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def per_pair(compare, pairs: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    for a, b in pairs:
        compare(a, b)
    return (time.perf_counter() - start) / len(pairs)


def measure(rounds: int = 5, count: int = 5_000) -> dict[str, float]:
    """Median seconds per comparison: the baseline, new names, names seen before."""
    samples = {"baseline": [], "first time": [], "seen before": []}
    for r in range(rounds):
        identity.lookalike_keys.cache_clear()
        fresh = names(2 * count, seed=r)
        pairs = list(zip(fresh[::2], fresh[1::2], strict=True))
        samples["baseline"].append(per_pair(lambda a, b: folded(a) == folded(b), pairs))
        samples["first time"].append(per_pair(identity.same_person, pairs))
        seen = pairs[-2_000:]  # the last 4,000 names compared: still in the cache
        samples["seen before"].append(per_pair(identity.same_person, seen))
    return {key: statistics.median(values) for key, values in samples.items()}


def bench_identity(rounds: int = 5) -> list[dict]:
    """Rows in benchmarks/run.py's table format."""
    times = measure(rounds)
    base = times["baseline"]
    said = {"first time": "not seen before", "seen before": "seen before (cached)"}
    return [{"figure": f"same_person on two names {said[when]} (TR39 skeletons from ICU)",
             "baseline": f"NFKC + case folding only: {base * 1e6:.1f} us",
             "measured": f"{times[when] * 1e6:.1f} us", "value": f"{times[when] / base:.1f}x",
             "target": "< 20 us", "met": times[when] < 20e-6}
            for when in ("first time", "seen before")]


def main() -> None:
    for row in bench_identity():
        print(f"{row['figure']}: {row['measured']} ({row['value']} the baseline, "
              f"{row['baseline']}); target {row['target']}")


if __name__ == "__main__":
    main()
