"""Every mutant is caught by the checks that name it, and by no other; every check catches at
least one mutant that no other check catches; the solutions pass. A race mutant is caught on
every one of RACE_RUNS runs, and no verdict changes with the machine's time zone."""

import pytest

from hitl_kit.course.checks import get_drill
from hitl_kit.course.selfcheck import CORRECT, FAIL, PASS

from . import (
    DRILL_KEYS,
    FAR_ZONE,
    RACE_RUNS,
    failing,
    far_zone_reports,
    mutants_of,
    race_reports,
    report_of,
    run_mutant,
    variant_report,
)
from .variants import VARIANTS

CLOCK_DRILLS = ("drill3", "drill4")  # drills whose checks read a clock

# First the race and zone runs: under pytest-xdist this file's worker computes them while the
# other file's worker computes the full run that both files read.

RACES = [pytest.param(key, m.id, id=f"{key}-{m.id}") for key in DRILL_KEYS
         for m in mutants_of(key) if m.race]


@pytest.mark.parametrize(("key", "mutant_id"), RACES)
def test_a_race_mutant_is_caught_on_every_run(key, mutant_id):
    """The race check explores the schedule, so its verdict is the same on every run."""
    mutant = next(m for m in mutants_of(key) if m.id == mutant_id)
    results = race_reports(key)[mutant_id]
    caught = [r for r in results if r.status == FAIL and mutant.fails[r.check.name] in r.message]
    assert len(results) == RACE_RUNS
    assert len(caught) == RACE_RUNS, [r.message.splitlines()[0] for r in results]


def test_there_are_race_mutants_for_threads_and_for_coroutines():
    races = {m.id for key in DRILL_KEYS for m in mutants_of(key) if m.race}
    assert len(races) >= 8 and any(r.startswith("async-") for r in races) and any(
        not r.startswith("async-") for r in races)


@pytest.mark.parametrize("key", DRILL_KEYS)
def test_no_verdict_depends_on_the_machines_time_zone(key):
    """The worker runs again with TZ set to FAR_ZONE: the solution and the right answers that read
    a clock their own way pass, and the mutants that read local time are caught."""
    offset, reports = far_zone_reports()
    assert offset == 14, f"TZ={FAR_ZONE} did not take effect (UTC{offset:+g})"
    report, errors = reports[key]["solution"]
    assert not errors and report.status == CORRECT, str(report)
    for variant in (v for v in VARIANTS[key] if v.zone):
        report, errors = reports[key][variant.id]
        assert not errors and report.status == CORRECT, str(report)
    for mutant in (m for m in mutants_of(key) if m.zone):  # (what else its clock upsets, too)
        failed = failing(reports[key][mutant.id][0])
        assert set(mutant.fails) <= set(failed), (mutant.id, failed)
        assert all(fragment in failed[name] for name, fragment in mutant.fails.items())


def test_each_drill_that_reads_a_clock_has_mutants_and_right_answers_marked_zone():
    assert all(any(m.zone for m in mutants_of(key)) and any(v.zone for v in VARIANTS[key])
               for key in CLOCK_DRILLS)


CASES = [pytest.param(key, m.id, id=f"{key}-{m.id}") for key in DRILL_KEYS
         for m in mutants_of(key)]


@pytest.mark.parametrize(("key", "mutant_id"), CASES)
def test_mutant_fails_exactly_the_checks_that_name_it(key, mutant_id):
    mutant = next(m for m in mutants_of(key) if m.id == mutant_id)
    report, errors = report_of(key, mutant_id)
    assert not errors, errors
    failed = failing(report)
    assert set(failed) == set(mutant.fails), str(report)
    for name, fragment in mutant.fails.items():
        assert fragment in failed[name], str(report)
    assert all(r.status == PASS for r in report.results if r.check.name not in failed), (
        str(report))


@pytest.mark.parametrize("key", DRILL_KEYS)
def test_the_unmutated_harness_passes(key):
    report, errors = run_mutant(key, None)
    assert not errors and report.status == CORRECT, str(report)


@pytest.mark.parametrize(("key", "variant"), [(key, v) for key, vs in VARIANTS.items()
                                              for v in vs], ids=lambda v: getattr(v, "id", v))
def test_a_right_answer_written_differently_passes(key, variant):
    report, errors = variant_report(key, variant.id)
    assert not errors and report.status == CORRECT, str(report)


@pytest.mark.parametrize("key", DRILL_KEYS)
def test_every_check_has_a_mutant_only_it_catches(key):
    sole = {}
    for mutant in mutants_of(key):
        failed = set(failing(report_of(key, mutant.id)[0]))
        if len(failed) == 1:
            sole.setdefault(failed.pop(), mutant.id)
    names = [chk.name for chk in get_drill(key).checks]
    assert [name for name in names if name not in sole] == []


@pytest.mark.parametrize("key", DRILL_KEYS)
def test_at_least_twelve_mutants_half_of_them_subtle(key):
    mutants = mutants_of(key)
    assert len(mutants) >= 12
    assert sum(m.subtle for m in mutants) * 2 >= len(mutants)
    assert len({m.id for m in mutants}) == len(mutants)
