"""``python -m tests.mutants.worker``: every mutant's and every right answer's report, as JSON on
stdout, computed in a process that has imported no more than the checks need (see
tests/mutants/__init__.py for why)."""

from __future__ import annotations

import json
import sys

from . import DRILL_KEYS, mutants_of, reports_here
from .variants import VARIANTS


def as_data(reports: dict) -> dict:
    return {name: {"results": [[r.status, r.message, r.hint] for r in report.results],
                   "errors": list(errors)} for name, (report, errors) in reports.items()}


def main() -> None:
    found: dict = {key: as_data(reports_here(key, mutants_of(key))) for key in DRILL_KEYS}
    found["variants"] = {key: as_data(reports_here(key, VARIANTS[key])) for key in DRILL_KEYS}
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    main()
