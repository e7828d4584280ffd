"""Where an audit append's time goes: cProfile of 3,000 appends to a trail with a head file, as
the benchmark appends (synchronous=FULL, the intent synced), written to
benchmarks/profiles/audit_append.txt (sorted by own time, then by cumulative time).

    .venv/bin/python benchmarks/profile_audit.py
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import audit_entry  # noqa: E402

from hitl_kit.audit import AuditTrail  # noqa: E402

OUT = Path(__file__).resolve().parent / "profiles" / "audit_append.txt"


def main(count: int = 3_000) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hitl-profile-"))
    trail = AuditTrail(folder / "audit.db", head_path=folder / "audit.head.json")
    for i in range(200):  # warm up
        trail.append(audit_entry(i))
    profile = cProfile.Profile()
    profile.enable()
    for i in range(200, 200 + count):
        trail.append(audit_entry(i))
    profile.disable()
    trail.close()
    text = io.StringIO()
    text.write(f"{count:,} appends with the head file, synchronous=FULL\n\n")
    for order in ("tottime", "cumulative"):
        pstats.Stats(profile, stream=text).strip_dirs().sort_stats(order).print_stats(25)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text.getvalue())
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
