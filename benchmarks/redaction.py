"""Redaction speed on hostile text: how long ``hitl_kit.redaction.clean_text`` takes for 1 MB of
each input built to make a regex-based redactor slow (letters-only and hex runs, near-miss token
prefixes, dense separators, unterminated blocks, characters whose lower case is longer, dense
control and invisible characters...), as a ratio to 1 MB of plain text measured in the same run.
Target: every input at most 3x plain text. Medians over rounds; nothing here asserts.

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

from hitl_kit.redaction import _ESCAPES, VENDOR_TOKENS, clean_text  # noqa: E402

MB = 1_000_000
TARGET_RATIO = 3.0
PLAIN = "plain text (English-like prose)"


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def adversarial_texts(size: int = MB) -> dict[str, str]:
    """Inputs of ``size`` characters, each aimed at one way a redactor can be made slow; the
    first is the plain text the others are compared with."""
    rng = random.Random(11)
    mixed_secrets = " ".join(
        rng.choice(["password: hunter2", "sk-proj-" + "Ab1" * 12, "AKIAIOSFODNN7EXAMPLE",
                    "postgres://app:pw1@db/x", "Authorization: Bearer abc123def456",
                    "the quick brown fox", "commit 3f786850e387550fdab8", "key_id=9"])
        for _ in range(size // 8))
    prefixes = [p + sep for sep, table in VENDOR_TOKENS.items() for p in table]
    unsafe = [chr(code) for code in _ESCAPES if code < 0xD800 or code > 0xDFFF]
    return {
        PLAIN: "".join(rng.choice(string.ascii_lowercase + "     ,.") for _ in range(size)),
        "letters only": _fill("a", size),
        "hex": "".join(rng.choice("0123456789abcdef") for _ in range(size)),
        "random printable": "".join(rng.choice(string.printable) for _ in range(size)),
        "one long token": "sk-" + _fill("Ab1", size - 3),
        "near-miss sk- prefixes": _fill("sk-" + "a" * 19 + " ", size),
        "near-miss AKIA": _fill("AKIA" + "A" * 15 + " ", size),
        "near-miss vendor prefixes": _fill(" ".join(p + "ab" for p in prefixes) + " ", size),
        "vendor prefixes glued": _fill("".join(prefixes), size),
        "repeated secret words": _fill("passwordtokensecretkeypin", size),
        "words then no separator": _fill("password" + "x" * 12 + " ", size),
        "names ending like secret words": _fill("e=s:n=y:", size),
        "colons": _fill(":", size),
        "equals after names": _fill("aaaa=", size),
        "spaces": _fill(" ", size),
        "dashes": _fill("-", size),
        "letter, dash": _fill("a-", size),
        "underscores": _fill("_", size),
        "letter, underscore": _fill("k_", size),
        "dots": _fill(".", size),
        "letter runs and dots": _fill("M" + "a" * 24 + ".", size),
        "slashes": _fill("/", size),
        "webhook paths": _fill("/hooks/abcdefgh", size),
        "percent signs": _fill("%", size),
        "encoded separators": _fill("token%3D", size),
        "-p and -u flags": _fill(" -p -u -pa -ua:", size),
        "digits and colons": _fill("123456789:", size),
        "at signs with colons": _fill("a:" * 100 + "@", size),
        "scheme then colons": _fill("://" + "a" * 128 + ":", size),
        "bearer near-misses": _fill("bearer a1a1a1 ", size),
        "PEM without END": "-----BEGIN RSA PRIVATE KEY-----\n" + _fill("A", size - 32),
        "PEM headers repeated": _fill("-----BEGIN RSA PRIVATE KEY-----", size),
        "unterminated quotes": _fill("token: '", size),
        "real secrets, densely": mixed_secrets[:size],
        "control characters": _fill("\x01", size),
        "every unsafe character, densely": _fill("".join(c + "a" for c in unsafe), size),
        "bidi and zero-width marks": _fill("a\u202e\u200b", size),
        "I with a dot (longer in lower case)": _fill("\u0130password=", size),
        "a log file (many lines)": _fill("2026-11-30 12:00:01 INFO request served\n", size),
    }


def time_per_mb(text: str, rounds: int) -> float:
    """Median seconds per MB for clean_text(text), in this process's CPU time (on a shared
    machine, wall time would count the moments another process had the CPU)."""
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        clean_text(text)
        samples.append(time.process_time() - start)
    return statistics.median(samples) * MB / len(text)


def measure(rounds: int = 5, size: int = MB) -> dict[str, float]:
    """Seconds per MB of each input; plain text is measured between the others too (its median
    over the whole run), so a machine busier in one moment does not skew the ratios."""
    clean_text("warm up: password: x")
    texts = adversarial_texts(size)
    plain, times = [], {}
    for name, text in texts.items():
        plain.append(time_per_mb(texts[PLAIN], rounds))
        times[name] = time_per_mb(text, rounds)
    times[PLAIN] = statistics.median(plain)
    return times


def bench_redaction(rounds: int = 5) -> dict:
    """One row in benchmarks/run.py's table format."""
    times = measure(rounds)
    plain = times.pop(PLAIN)
    worst = max(times, key=times.get)
    ratio = times[worst] / plain
    return {"figure": f"redaction of 1 MB of hostile text ({len(times)} inputs)",
            "baseline": f"1 MB of plain text: {plain * 1e3:.0f} ms",
            "measured": f"median {statistics.median(times.values()) * 1e3:.0f} ms, worst "
                        f"{times[worst] * 1e3:.0f} ms ({worst})",
            "value": f"{ratio:.2f}x worst", "target": f"<= {TARGET_RATIO:g}x plain text",
            "met": ratio <= TARGET_RATIO}


def main() -> None:
    times = measure()
    plain = times[PLAIN]
    width = max(map(len, times))
    for name, seconds in times.items():
        flag = "" if seconds / plain <= TARGET_RATIO else "  over target"
        print(f"{name:<{width}}  {seconds * 1e3:6.1f} ms per MB  {seconds / plain:5.2f}x{flag}")
    worst = max(times.values())
    print(f"{'worst':<{width}}  {worst * 1e3:6.1f} ms per MB  {worst / plain:5.2f}x "
          f"(target <= {TARGET_RATIO:g}x plain text)")


if __name__ == "__main__":
    main()
