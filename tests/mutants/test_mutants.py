"""Every mutant is caught by the checks that name it, and by no other; every check catches at
least one mutant that no other check catches; the solutions pass."""

import pytest

from hitl_kit.course.checks import get_drill
from hitl_kit.course.selfcheck import CORRECT, PASS

from . import DRILL_KEYS, failing, mutants_of, report_of, run_mutant, variant_report
from .variants import VARIANTS

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
