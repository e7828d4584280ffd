"""The drills' checks, one module per drill, and the entry points that tie them to notebooks and
to the learner's progress file: ``get_drill("drill1")`` (or ``from hitl_kit.course.checks import
drill1``), ``check_notebook(path)``, ``progress_table()``.

Dependencies run one way: this package -> ``course.progress`` -> ``course.selfcheck``. The
engine never imports the progress file; each drill is handed ``progress.record`` as its recorder.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hitl_kit.course import progress
from hitl_kit.course.selfcheck import (
    CORRECT,
    CheckError,
    Drill,
    Report,
    drill_key_of,
    shown_path,
)

DRILL_MODULES = {
    "drill1": "hitl_kit.course.checks.d01_classify",
    "drill2": "hitl_kit.course.checks.d02_gate",
    "drill3": "hitl_kit.course.checks.d03_audit",
    "drill4": "hitl_kit.course.checks.d04_timeout",
}


def get_drill(key: str) -> Drill:
    if key not in DRILL_MODULES:
        raise CheckError(f"no drill {key!r}; drills are: {', '.join(DRILL_MODULES)}")
    drill = importlib.import_module(DRILL_MODULES[key]).DRILL
    drill.recorder = progress.record
    return drill


def all_drills() -> list[Drill]:
    return [get_drill(key) for key in DRILL_MODULES]


def check_notebook(path: str | Path) -> Report:
    """Run a saved drill notebook's cells, then its drill's checks; record the result.

    Raises ``CheckError`` (one line: what was wrong, what to give) for a path that is missing, a
    folder, not a notebook, or a notebook of no drill.
    """
    return get_drill(drill_key_of(Path(path))).check_notebook(path)


def progress_table() -> tuple[str, bool]:
    """Check every drill notebook now (your copy, once the launcher made it); a text table of
    their status, and whether all pass."""
    rows = [("drill", "status", "checks", "notebook")]
    all_correct = True
    for drill in all_drills():
        path = drill.learner_path
        report = check_notebook(path)
        all_correct &= report.status == CORRECT
        rows.append((drill.title, report.status, f"{report.passed}/{len(report.results)}",
                     shown_path(path)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines), all_correct


def __getattr__(name: str) -> Drill:  # ``from hitl_kit.course.checks import drill1``
    if name in DRILL_MODULES:
        return get_drill(name)
    raise AttributeError(name)
