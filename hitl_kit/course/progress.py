"""A learner's progress, kept in one small JSON file the kit owns.

* Drill results are recorded every time a self-check runs (in a notebook or from the shell), so
  the end-of-day checklist ticks its drill items from real results, never from a click.
* The other checklist items are ticked by the learner; weak areas are a short log.

The file is ``.hitl_kit/progress.json`` in the repository (``HITL_KIT_PROGRESS`` overrides the
path; the test suite points it at a temporary file).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hitl_kit.course.selfcheck import CORRECT, ROOT

PROGRESS_ENV = "HITL_KIT_PROGRESS"

# (item, how it is ticked): a drill key, "drills:N" (N drills correct), "weak-area", or "learner".
CHECKLIST = [
    ("Can classify actions by reversibility", "drill1"),
    ("Know the difference between sync and async approval gates", "learner"),
    ("Implemented interrupt() in a LangGraph graph", "drill2"),
    ("Tested pause-and-resume with Command(resume=...)", "drill2"),
    ("Designed an audit trail schema", "drill3"),
    ("Completed at least 2 practice drills", "drills:2"),
    ("Logged one weak area for revision", "weak-area"),
]


def progress_path() -> Path:
    return Path(os.environ.get(PROGRESS_ENV) or ROOT / ".hitl_kit" / "progress.json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Progress:
    """Load, change and save the progress file. Every change is saved at once, atomically."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else progress_path()
        self.data = {"drills": {}, "ticked": {}, "weak_areas": []}
        self.warning = ""
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(loaded, dict):
                    raise ValueError("not a JSON object")
                self.data.update(loaded)
            except ValueError as exc:
                # Keep the damaged file for whoever wants to look; start a fresh one.
                kept = self.path.with_suffix(f".damaged-{datetime.now(UTC):%Y%m%dT%H%M%S}.json")
                self.path.replace(kept)
                self.warning = f"progress file was unreadable ({exc}); kept it as {kept.name}"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".progress-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.data, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def record(self, report) -> None:
        """Store a self-check report's result for its drill."""
        self.data["drills"][report.drill.key] = {
            "status": report.status, "passed": report.passed, "checks": len(report.results),
            "at": _now()}
        self.save()

    def drill_status(self, key: str) -> str:
        return self.data["drills"].get(key, {}).get("status", "not checked yet")

    def tick(self, item: str, done: bool = True) -> None:
        """Tick (or untick) a checklist item the learner owns."""
        owner = dict(CHECKLIST).get(item)
        if owner is None:
            raise ValueError(f"no checklist item {item!r}; items are: "
                             + "; ".join(name for name, _ in CHECKLIST))
        if owner != "learner":
            raise ValueError(f"{item!r} ticks itself from your results ({owner}); "
                             "run the self-check instead")
        self.data["ticked"][item] = bool(done)
        self.save()

    def add_weak_area(self, text: str) -> None:
        text = (text or "").strip()
        if not text:
            raise ValueError("write what felt weak, e.g. 'when to use a soft gate'")
        self.data["weak_areas"].append({"text": text, "at": _now()})
        self.save()

    def checklist(self) -> list[tuple[str, bool, str]]:
        """(item, done, how it is ticked) for each end-of-day item."""
        correct = sum(d.get("status") == CORRECT for d in self.data["drills"].values())
        rows = []
        for item, owner in CHECKLIST:
            if owner == "learner":
                done, how = self.data["ticked"].get(item, False), "you tick it"
            elif owner == "weak-area":
                done, how = bool(self.data["weak_areas"]), "from your weak-area log"
            elif owner.startswith("drills:"):
                done, how = correct >= int(owner.split(":")[1]), f"{correct} drill(s) correct"
            else:
                status = self.drill_status(owner)
                done, how = status == CORRECT, f"{owner}: {status}"
            rows.append((item, done, how))
        return rows


def records_progress(where: Path) -> bool:
    """Checking a notebook in ``solutions/`` (the kit's, or the learner's copy of it) proves
    nothing about the learner: don't record it."""
    from hitl_kit.lab import work_dir

    where = Path(where).resolve()
    for solutions in (ROOT / "solutions", work_dir() / "solutions"):
        solutions = solutions.resolve()
        if where == solutions or solutions in where.parents:
            return False
    return True


def record(report, where: Path) -> None:
    """The recorder ``hitl_kit.course.checks`` gives each drill: save a self-check's result,
    unless the notebook checked lives in ``solutions/``."""
    if records_progress(where):
        Progress().record(report)
