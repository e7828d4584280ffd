"""What deciding who a name is costs: ``same_person`` on names never seen before (three TR39
skeletons each, from the shipped Unicode data) and on names seen before (cached), and
``check_name``, against the comparison the kit made before (NFKC and case folding only); and what
importing ``hitl_kit.identity`` and reading its data cost, against importing the module it builds
on (``hitl_kit.vocabulary``), each in a new interpreter. Measured in the same run.

    .venv/bin/python benchmarks/identity.py
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hitl_kit import identity  # noqa: E402

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZабвгдеёжзийклмнопрстуαβγδεζηθικλμ"
SCRIPTS = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "абвгдеёжзийклмнопрсту",
           "αβγδεζηθικλμ"]  # one per name: names check_name accepts
# (what runs first, the step timed), each in a new interpreter.
STARTS = {"vocabulary": ("pass", "import hitl_kit.vocabulary"),
          "identity": ("pass", "import hitl_kit.identity"),
          "first comparison": ("import hitl_kit.identity as i", "i.same_person('ana', 'bo')"),
          "a later comparison": ("import hitl_kit.identity as i; i.same_person('a', 'b')",
                                 "i.same_person('ana', 'bo')")}


def names(count: int, seed: int, alphabets: list[str] = [LETTERS]) -> list[str]:  # noqa: B006
    chooser = random.Random(seed)
    made = []
    for i in range(count):
        letters = chooser.choice(alphabets)
        made.append("".join(chooser.choice(letters) for _ in range(chooser.randint(3, 12)))
                    + f" {i}")
    return made


def folded(name: str) -> str:
    """The baseline: the comparison before identity.py (NFKC, case folded, spaces collapsed)."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def per_item(work, items: list) -> float:
    start = time.perf_counter()
    for item in items:
        work(*item)
    return (time.perf_counter() - start) / len(items)


def measure(rounds: int = 5, count: int = 5_000) -> dict[str, float]:
    """Median seconds per comparison or check: the baseline, new names, names seen before."""
    samples = {"baseline": [], "first time": [], "seen before": [], "check_name": []}
    for r in range(rounds):
        identity.lookalike_keys.cache_clear()
        fresh = names(2 * count, seed=r)
        pairs = list(zip(fresh[::2], fresh[1::2], strict=True))
        samples["baseline"].append(per_item(lambda a, b: folded(a) == folded(b), pairs))
        samples["first time"].append(per_item(identity.same_person, pairs))
        seen = pairs[-2_000:]  # the last 4,000 names compared: still in the cache
        samples["seen before"].append(per_item(identity.same_person, seen))
        one_script = names(count, 100 + r, SCRIPTS)
        samples["check_name"].append(per_item(identity.check_name, [(n,) for n in one_script]))
    return {key: statistics.median(values) for key, values in samples.items()}


def fresh_seconds(what: str) -> float:
    """Seconds the timed step of ``what`` takes in a new interpreter."""
    setup, timed = STARTS[what]
    code = (f"import time; {setup}; start = time.perf_counter(); {timed}; "
            "print(time.perf_counter() - start)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return float(done.stdout)


def measure_start(rounds: int = 5) -> dict[str, float]:
    return {what: statistics.median(fresh_seconds(what) for _ in range(rounds))
            for what in STARTS}


def bench_identity(rounds: int = 5) -> list[dict]:
    """Rows in benchmarks/run.py's table format."""
    times, start = measure(rounds), measure_start(rounds)
    base = times["baseline"]
    said = {"first time": "same_person on two names not seen before",
            "seen before": "same_person on two names seen before (cached)",
            "check_name": "check_name on a name in one script, not seen before"}
    rows = [{"figure": f"{said[when]} (TR39 skeletons from the shipped ICU data)",
             "baseline": f"NFKC + case folding only: {base * 1e6:.1f} us",
             "measured": f"{times[when] * 1e6:.1f} us", "value": f"{times[when] / base:.1f}x",
             "target": "< 20 us", "met": times[when] < 20e-6}
            for when in ("first time", "seen before", "check_name")]
    rows.append({"figure": "import hitl_kit.identity (data not read yet)",
                 "baseline": f"import hitl_kit.vocabulary: {start['vocabulary'] * 1e3:.1f} ms",
                 "measured": f"{start['identity'] * 1e3:.1f} ms",
                 "value": f"{start['identity'] / start['vocabulary']:.1f}x",
                 "target": "< 100 ms", "met": start["identity"] < 0.1})
    first, second = start["first comparison"], start["a later comparison"]
    rows.append({"figure": "first same_person in a process (reads the Unicode data)",
                 "baseline": f"a later one: {second * 1e6:.0f} us",
                 "measured": f"{first * 1e3:.1f} ms", "value": f"{first / second:.0f}x",
                 "target": "< 100 ms", "met": first < 0.1})
    return rows


def main() -> None:
    for row in bench_identity():
        print(f"{row['figure']}: {row['measured']} ({row['value']} the baseline, "
              f"{row['baseline']}); target {row['target']}")


if __name__ == "__main__":
    main()
