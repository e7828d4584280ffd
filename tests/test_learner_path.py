"""The learner's path: nothing read before a drill gives its answer away."""

from hitl_kit.policy import ACTION_TABLE, SHOWN_ACTIONS, Policy, Reversibility
from hitl_kit.spoilers.drill1 import EMAIL_ASSISTANT_ACTIONS

from .conftest import ROOT

# What a learner reads before drill 1: the first two notebooks, the modules they point to, the
# README, and the drill itself.
BEFORE_DRILL_1 = ["notebooks/00_start_here.ipynb", "notebooks/01_classify_actions.ipynb",
                  "hitl_kit/policy.py", "hitl_kit/world.py", "README.md",
                  "drills/01_classify_email_actions.ipynb"]
VERDICTS = [k.value for k in Reversibility] + [p.value for p in Policy]


def test_drill1_answer_is_not_given_away_before_the_drill():
    leaks = []
    for rel in BEFORE_DRILL_1:
        for number, line in enumerate((ROOT / rel).read_text().splitlines(), start=1):
            for action, _ in EMAIL_ASSISTANT_ACTIONS:
                if action in line and any(verdict in line for verdict in VERDICTS):
                    leaks.append(f"{rel}:{number}: {line.strip()}")
    assert not leaks, "drill 1's answer shows before the drill:\n" + "\n".join(leaks)


def test_notebook_01_shows_the_table_without_the_drill_actions():
    drill_actions = {action for action, _ in EMAIL_ASSISTANT_ACTIONS}
    assert not drill_actions & {action for action, _ in SHOWN_ACTIONS}
    assert set(ACTION_TABLE) == set(SHOWN_ACTIONS) | set(EMAIL_ASSISTANT_ACTIONS)
    for rel in BEFORE_DRILL_1[:2]:
        assert "ACTION_TABLE" not in (ROOT / rel).read_text(), f"{rel} shows the full table"
