"""Realistic wrong solutions, each made from a solution notebook by small edits (a mutation test).

Every ``Mutant`` says which checks must fail and a fragment of each one's message; every other
check must pass. For each mutant the solution's cells are compiled with the edits applied and run
in a fresh namespace (cells tagged ``demo`` are skipped), then the drill's checks run on that
namespace, each in its own child process, as they do for a learner.

All of that happens in one lean worker process (``python -m tests.mutants.worker``), not in the
test process: forking costs time in proportion to the forking process's memory, and by the time
the suite gets here pytest holds pandas, Playwright and the rest (a fork of 460 MB took 28 ms
here, of 76 MB 4 ms; the mutants need about a thousand).

``python -m tests.mutants`` prints how many mutants each drill and each check has.

The worker has two more runs: each race mutant's race check run ``RACE_RUNS`` times (the
verdict must not depend on luck), and the solutions, the right answers of the drills that read a
clock and the mutants marked ``zone`` checked with the machine's time zone set to ``FAR_ZONE``
(no verdict may depend on the machine's zone).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: each test process runs the worker itself
    fcntl = None

from hitl_kit.course.checks import get_drill
from hitl_kit.course.selfcheck import (
    FAIL,
    ROOT,
    SELFCHECK_TAG,
    Drill,
    Report,
    Result,
    code_of_cells,
    run_cells,
)

DEMO_TAG = "demo"  # cells that only show the drill working; the checks never need them
DRILL_KEYS = ("drill1", "drill2", "drill3", "drill4")
RACE_RUNS = 20
# The checks' and the cells' deadline here: a verdict must not depend on the deadline, and many
# checks run at once on a loaded machine, so the ceiling only catches hangs (a learner's check
# gets CHECK_TIMEOUT_S, a cell CELL_TIMEOUT_S).
HARNESS_TIMEOUT_S = 15.0
FAR_ZONE = "Pacific/Kiritimati"  # UTC+14: as far from UTC as a machine's clock is set


@dataclass(frozen=True)
class Mutant:
    id: str
    why: str  # the real bug it stands for
    edits: tuple[tuple[str, str], ...]  # (old, new): old occurs exactly once in the solution
    fails: dict[str, str] = field(hash=False)  # failing check's name -> fragment of its message
    subtle: bool = False  # passes a quick try by hand; only a probe the drill never shows finds it
    race: bool = False  # wrong only when two callers interleave: must be caught on every run
    zone: bool = False  # wrong only where local time is not UTC: caught in every machine zone


def mutants_of(key: str) -> list[Mutant]:
    return importlib.import_module(f"tests.mutants.{key}").MUTANTS


@functools.cache
def solution_cells(key: str) -> tuple[tuple[int, str], ...]:
    """(cell number, source) of the solution's code cells the checks need."""
    cells = json.loads(get_drill(key).solution_path.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    return tuple((number, "".join(c["source"])) for number, c in enumerate(code, start=1)
                 if not {SELFCHECK_TAG, DEMO_TAG} & set(c["metadata"].get("tags", [])))


def mutated_cells(key: str, edits) -> list[tuple[int, str]]:
    cells = [list(cell) for cell in solution_cells(key)]
    for old, new in edits:
        hits = [cell for cell in cells if old in cell[1]]
        assert len(hits) == 1 and hits[0][1].count(old) == 1, (
            f"{old!r} must occur exactly once in the solution's cells, found {len(hits)} cells")
        hits[0][1] = hits[0][1].replace(old, new)
    return [tuple(cell) for cell in cells]


def namespace_of(key: str, mutant: Mutant | None) -> tuple[dict, list[str]]:
    """The namespace after running the solution's cells with the mutant's edits, and the
    cells' errors (None: the solution as is)."""
    namespace: dict = {"__name__": "__drill__"}
    cells = mutated_cells(key, mutant.edits if mutant else ())
    errors = run_cells(code_of_cells(cells, f"{key}-{mutant.id if mutant else 'solution'}"),
                       namespace, timeout=HARNESS_TIMEOUT_S)
    return namespace, errors


def run_mutant(key: str, mutant: Mutant | None) -> tuple[Report, list[str]]:
    """The drill's report on the solution with the mutant's edits (None: the solution as is)."""
    namespace, errors = namespace_of(key, mutant)
    return get_drill(key).run(namespace), errors


SOLUTION = Mutant("solution", "the solution as it is", (), {})


def reports_here(key: str, mutants: list[Mutant],
                 drill: Drill | None = None) -> dict[str, tuple[Report, tuple[str, ...]]]:
    """Each mutant's report, computed in this process. The cells run one mutant after another;
    the checks of several mutants run at once (their children mostly wait on short deadlines).
    ``drill``: other checks than the drill's own (its race check, repeated)."""
    drill = drill or get_drill(key)
    drill.warm_up()  # once, before the cells import the same libraries, and before any fork
    prepared = [(m.id, *namespace_of(key, m)) for m in mutants]
    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = pool.map(lambda item: drill.run(item[1], timeout=HARNESS_TIMEOUT_S), prepared)
        return {mutant_id: (report, tuple(errors))
                for (mutant_id, _, errors), report in zip(prepared, reports, strict=True)}


def race_runs_here(key: str) -> dict[str, tuple[Report, tuple[str, ...]]]:
    """Each race mutant's report from its race check alone, run RACE_RUNS times side by side."""
    found = {}
    for mutant in (m for m in mutants_of(key) if m.race):
        base = get_drill(key)
        race = [chk for chk in base.checks if chk.name in mutant.fails] * RACE_RUNS
        repeated = Drill(base.key, base.title, base.notebook, race, prepare=base.prepare)
        found.update(reports_here(key, [mutant], repeated))
    return found


@functools.cache
def _from_the_worker(run: str = "all") -> dict:
    """The worker's JSON for ``run``. Under pytest-xdist the test files that need the same run
    may be on different xdist workers: the first computes it, the others wait and read it."""
    shared = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if shared is None or fcntl is None:
        return _run_the_worker(run)
    path = Path(tempfile.gettempdir()) / f"hitl-kit-mutants-{shared}-{run}.json"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        found = _run_the_worker(run)
        path.write_text(json.dumps(found), encoding="utf-8")
        return found


def _run_the_worker(run: str) -> dict:
    env = {**os.environ, "TZ": FAR_ZONE} if run == "zone" else None
    done = subprocess.run([sys.executable, "-m", "tests.mutants.worker", run], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _report(key: str, found: dict) -> tuple[Report, tuple[str, ...]]:
    drill = get_drill(key)
    results = [Result(chk, *outcome) for chk, outcome in zip(drill.checks, found["results"],
                                                             strict=True)]
    return Report(drill, results), tuple(found["errors"])


def reports_of(key: str) -> dict[str, tuple[Report, tuple[str, ...]]]:
    """Every mutant's report, from the worker process."""
    return {name: _report(key, found) for name, found in _from_the_worker()[key].items()}


def variant_report(key: str, variant_id: str) -> tuple[Report, tuple[str, ...]]:
    """A right answer's report (tests/mutants/variants.py), from the worker process."""
    return _report(key, _from_the_worker()["variants"][key][variant_id])


def report_of(key: str, mutant_id: str) -> tuple[Report, tuple[str, ...]]:
    return reports_of(key)[mutant_id]


def race_reports(key: str) -> dict[str, list[Result]]:
    """Each race mutant's RACE_RUNS results of its race check, from the worker process."""
    found = _from_the_worker("races")[key]
    return {name: [Result(_check(key, data["names"][i]), *outcome)
                   for i, outcome in enumerate(data["results"])]
            for name, data in found.items()}


def _check(key: str, name: str):
    return next(chk for chk in get_drill(key).checks if chk.name == name)


def far_zone_reports() -> tuple[float, dict[str, dict[str, tuple[Report, tuple[str, ...]]]]]:
    """The worker's local UTC offset (hours) and its reports with the zone set to FAR_ZONE."""
    found = _from_the_worker("zone")
    return found["offset_hours"], {key: {name: _report(key, data) for name, data in
                                         found[key].items()} for key in DRILL_KEYS}


def failing(report: Report) -> dict[str, str]:
    return {r.check.name: r.message for r in report.results if r.status == FAIL}
