"""``python -m tests.mutants.worker [all|races|zone]``: reports as JSON on stdout, computed in a
process that has imported no more than the checks need (see tests/mutants/__init__.py for why).

``all``: every mutant's and every right answer's report. ``races``: each race mutant's race check
run RACE_RUNS times, with the check names. ``zone``: the solutions, and the mutants and right
answers marked ``zone`` (they read a clock), with this process's local UTC offset (run it with
TZ set far from UTC)."""

from __future__ import annotations

import json
import sys
import time

from . import DRILL_KEYS, SOLUTION, mutants_of, race_runs_here, reports_here
from .variants import VARIANTS


def as_data(reports: dict) -> dict:
    return {name: {"results": [[r.status, r.message, r.hint] for r in report.results],
                   "names": [r.check.name for r in report.results],
                   "errors": list(errors)} for name, (report, errors) in reports.items()}


def main(run: str) -> None:
    if run == "races":
        found: dict = {key: as_data(race_runs_here(key)) for key in DRILL_KEYS}
    elif run == "zone":
        found = {"offset_hours": time.localtime().tm_gmtoff / 3600}
        for key in DRILL_KEYS:
            chosen = [SOLUTION, *(m for m in (*mutants_of(key), *VARIANTS[key]) if m.zone)]
            found[key] = as_data(reports_here(key, chosen))
    else:
        found = {key: as_data(reports_here(key, mutants_of(key))) for key in DRILL_KEYS}
        found["variants"] = {key: as_data(reports_here(key, VARIANTS[key]))
                             for key in DRILL_KEYS}
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "all")
