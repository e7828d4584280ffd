"""``.venv/bin/python -m tests.mutants [--messages]``: run every mutant and print, from what the
checks reported (not from the mutants' declarations), how many mutants each drill and each check
catches, how many of them only that check catches, and how many are subtle. ``--messages`` also
prints, for each check, the message it gave for one mutant that only it catches."""

from __future__ import annotations

import sys
from collections import Counter

from hitl_kit.course.checks import get_drill

from . import DRILL_KEYS, failing, mutants_of, reports_of


def main(show_messages: bool) -> None:
    total = 0
    for key in DRILL_KEYS:
        drill, mutants = get_drill(key), mutants_of(key)
        reports = reports_of(key)
        caught, alone, example = Counter(), Counter(), {}
        for mutant in mutants:
            report, _ = reports[mutant.id]
            failed = failing(report)
            caught.update(failed.keys())
            if len(failed) == 1:
                (name,) = failed
                alone[name] += 1
                example.setdefault(name, (mutant.id, report))
        missed = [m.id for m in mutants if not failing(reports[m.id][0])]
        total += len(mutants)
        print(f"{drill.title}: {len(mutants)} mutants, {sum(m.subtle for m in mutants)} subtle, "
              f"{len(mutants) - len(missed)} caught" + (f" (missed: {missed})" if missed else ""))
        for chk in drill.checks:
            print(f"  {caught[chk.name]:3} caught, {alone[chk.name]:2} by it alone  {chk.name}")
        if show_messages:
            for chk in drill.checks:
                mutant_id, report = example[chk.name]
                result = next(r for r in report.results if r.check.name == chk.name)
                print(f"\n  [{chk.name}] mutant {mutant_id}:")
                print("\n".join(f"    {line}" for line in result.message.splitlines()))
                print(f"    hint: {result.hint or chk.hint}")
        print()
    print(f"{total} mutants in all")


if __name__ == "__main__":
    main("--messages" in sys.argv[1:])
