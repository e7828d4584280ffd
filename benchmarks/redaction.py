"""Redaction speed on hostile text: how long ``hitl_kit.redaction.clean_text`` takes for 1 MB of
each input built to make a regex-based redactor slow (the issue's letters-only and hex runs,
near-miss token prefixes, dense separators, unterminated blocks...). Target: under 50 ms per MB
for every input. Medians over rounds; nothing here asserts.

    .venv/bin/python benchmarks/redaction.py          # the table, one row per input
    bench_redaction(rounds)                           # one row for benchmarks/run.py
"""

from __future__ import annotations

import random
import statistics
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hitl_kit.redaction import clean_text  # noqa: E402

MB = 1_000_000
TARGET_MS_PER_MB = 50


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def adversarial_texts(size: int = MB) -> dict[str, str]:
    """Inputs of ``size`` characters, each aimed at one way a redactor can be made slow."""
    rng = random.Random(11)
    mixed_secrets = " ".join(
        rng.choice(["password: hunter2", "sk-proj-" + "Ab1" * 12, "AKIAIOSFODNN7EXAMPLE",
                    "postgres://app:pw1@db/x", "Authorization: Bearer abc123def456",
                    "the quick brown fox", "commit 3f786850e387550fdab8", "key_id=9"])
        for _ in range(size // 8))
    return {
        "letters only": _fill("a", size),
        "hex": "".join(rng.choice("0123456789abcdef") for _ in range(size)),
        "English-like prose": "".join(rng.choice(string.ascii_lowercase + "     ,.")
                                      for _ in range(size)),
        "random printable": "".join(rng.choice(string.printable) for _ in range(size)),
        "one long token": "sk-" + _fill("Ab1", size - 3),
        "near-miss sk- prefixes": _fill("sk-" + "a" * 19 + " ", size),
        "near-miss AKIA": _fill("AKIA" + "A" * 15 + " ", size),
        "repeated secret words": _fill("passwordtokensecretkeypin", size),
        "words then no separator": _fill("password" + "x" * 12 + " ", size),
        "colons": _fill(":", size),
        "equals after names": _fill("aaaa=", size),
        "spaces": _fill(" ", size),
        "dashes": _fill("-", size),
        "at signs with colons": _fill("a:" * 100 + "@", size),
        "scheme then colons": _fill("://" + "a" * 128 + ":", size),
        "bearer near-misses": _fill("bearer a1a1a1 ", size),
        "PEM without END": "-----BEGIN RSA PRIVATE KEY-----\n" + _fill("A", size - 32),
        "PEM headers repeated": _fill("-----BEGIN RSA PRIVATE KEY-----", size),
        "unterminated quotes": _fill("token: '", size),
        "real secrets, densely": mixed_secrets[:size],
        "control characters": _fill("\x01", size),
        "bidi and zero-width marks": _fill("a\u202e\u200b", size),
        "a log file (many lines)": _fill("2026-11-30 12:00:01 INFO request served\n", size),
    }


def time_per_mb(text: str, rounds: int) -> float:
    """Median seconds per MB for clean_text(text)."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        clean_text(text)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * MB / len(text)


def measure(rounds: int = 5, size: int = MB) -> dict[str, float]:
    clean_text("warm up: password: x")
    return {name: time_per_mb(text, rounds) for name, text in adversarial_texts(size).items()}


def bench_redaction(rounds: int = 5) -> dict:
    """One row in benchmarks/run.py's table format."""
    times = measure(rounds)
    worst = max(times, key=times.get)
    worst_ms = times[worst] * 1e3
    return {"figure": f"redaction of 1 MB of hostile text ({len(times)} inputs)",
            "baseline": "-",
            "measured": f"median {statistics.median(times.values()) * 1e3:.0f} ms, worst "
                        f"{worst_ms:.0f} ms ({worst})",
            "value": f"{1 / times[worst]:.0f} MB/s worst",
            "target": f"< {TARGET_MS_PER_MB} ms per MB", "met": worst_ms < TARGET_MS_PER_MB}


def main() -> None:
    times = measure()
    width = max(map(len, times))
    for name, seconds in times.items():
        flag = "" if seconds * 1e3 < TARGET_MS_PER_MB else "  over target"
        print(f"{name:<{width}}  {seconds * 1e3:6.1f} ms per MB{flag}")
    print(f"{'worst':<{width}}  {max(times.values()) * 1e3:6.1f} ms per MB "
          f"(target < {TARGET_MS_PER_MB})")


if __name__ == "__main__":
    main()
