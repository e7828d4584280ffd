"""Progress over all drills: each drill notebook in ``drills/`` checked, one line a drill."""

from __future__ import annotations

from hitl_kit.checks import all_drills
from hitl_kit.selfcheck import CORRECT, check_notebook


def progress_table() -> tuple[str, bool]:
    """A text table of every drill's status, and whether all of them are correct."""
    rows = [("drill", "status", "checks", "notebook")]
    all_correct = True
    for drill in all_drills():
        report = check_notebook(drill.drill_path)
        all_correct &= report.status == CORRECT
        rows.append((drill.title, report.status, f"{report.passed}/{len(report.results)}",
                     f"drills/{drill.notebook}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines), all_correct
