import math

import pytest

from hitl_kit.policy import (
    ACTION_TABLE,
    POLICY_BY_CLASS,
    ActionPolicy,
    Policy,
    PolicyTableError,
    Reversibility,
)

DEFAULT = ActionPolicy()


@pytest.mark.parametrize(
    ("klass", "policy"),
    [("fully_reversible", "auto_execute"), ("partially_reversible", "auto_with_logging"),
     ("irreversible_low", "soft_gate"), ("irreversible_high", "hard_gate")],
)
def test_each_class_maps_to_its_policy(klass, policy):
    action = next(a for a, c in ACTION_TABLE if c == klass)
    ruling = DEFAULT.classify(action)
    assert ruling.reversibility == klass
    assert ruling.policy == policy
    assert ruling.needs_human == (policy in ("soft_gate", "hard_gate"))


def test_unclassified_action_is_hard_gated_and_says_why():
    ruling = DEFAULT.classify("drop_all_tables")
    assert ruling.policy is Policy.HARD_GATE
    assert ruling.reversibility is None
    assert "unclassified" in ruling.reason and "drop_all_tables" in ruling.reason


def test_near_miss_name_is_not_treated_as_known():
    assert DEFAULT.classify("delete_customers").policy is Policy.HARD_GATE
    assert DEFAULT.classify("Read_Inbox").policy is Policy.HARD_GATE


def test_unknown_class_is_refused_at_load_with_the_allowed_values():
    with pytest.raises(PolicyTableError, match=r"'sort_of_safe'.*fully_reversible"):
        ActionPolicy([("read_inbox", "sort_of_safe")])


def test_duplicate_action_is_refused_even_with_the_same_class():
    with pytest.raises(PolicyTableError, match="listed twice"):
        ActionPolicy([("read_inbox", "fully_reversible"), ("read_inbox", "fully_reversible")])


def test_missing_policy_is_refused_and_named():
    policies = dict(POLICY_BY_CLASS)
    del policies["irreversible_low"]
    with pytest.raises(PolicyTableError, match="irreversible_low"):
        ActionPolicy(ACTION_TABLE, policies)


def test_unknown_policy_is_refused():
    with pytest.raises(PolicyTableError, match="'ask_nicely'"):
        ActionPolicy(ACTION_TABLE, {**POLICY_BY_CLASS, "irreversible_high": "ask_nicely"})


@pytest.mark.parametrize("row", [("read_inbox",), "read_inbox", ("", "fully_reversible"),
                                 (None, "fully_reversible")])
def test_malformed_rows_are_refused(row):
    with pytest.raises(PolicyTableError):
        ActionPolicy([row])


def test_mapping_form_and_enum_values_work():
    table = ActionPolicy({"ping": Reversibility.FULLY_REVERSIBLE})
    assert table.classify("ping").policy is Policy.AUTO_EXECUTE
    assert "ping" in table and "pong" not in table


def test_from_tools_leaves_untagged_tools_unclassified():
    class FakeTool:
        def __init__(self, name, metadata):
            self.name, self.metadata = name, metadata

    table = ActionPolicy.from_tools([FakeTool("read", {"reversibility": "fully_reversible"}),
                                     FakeTool("nuke", None)])
    assert table.classify("read").policy is Policy.AUTO_EXECUTE
    assert table.classify("nuke").policy is Policy.HARD_GATE


def test_table_rows_cover_every_action_once():
    rows = DEFAULT.table()
    assert [r["action"] for r in rows] == [a for a, _ in ACTION_TABLE]
    assert all(r["policy"] == POLICY_BY_CLASS[r["class"]] for r in rows)


# -- impact rules: the boundaries of every operator, and several rules on one tool ---------------

ONE_TOOL = [("update_thing", "partially_reversible")]


def raised(op: str, threshold, value) -> bool:
    """Whether the rule ``args.n <op> threshold`` raised update_thing for n = ``value``."""
    policy = ActionPolicy(ONE_TOOL, rules=[("update_thing", "args.n", op, threshold,
                                            "irreversible_high")])
    ruling = policy.classify("update_thing", {"n": value})
    assert ruling.policy in (Policy.AUTO_WITH_LOGGING, Policy.HARD_GATE), ruling
    return ruling.policy is Policy.HARD_GATE


# What each operator must answer just below, at and just above its threshold, written out by hand
# (not computed with the operator it checks).
BOUNDARIES = {">": (False, False, True), ">=": (False, True, True), "<": (True, False, False),
              "<=": (True, True, False), "==": (False, True, False), "!=": (True, False, True)}


@pytest.mark.parametrize("op", list(BOUNDARIES))
@pytest.mark.parametrize(("below", "at", "above"), [(99, 100, 101),
                                                    (math.nextafter(1000.0, 0), 1000.0,
                                                     math.nextafter(1000.0, 2000))],
                         ids=["int", "float"])
def test_every_operator_just_below_at_and_just_above_its_threshold(op, below, at, above):
    assert (raised(op, at, below), raised(op, at, at), raised(op, at, above)) == BOUNDARIES[op]


def test_in_and_not_in_hold_for_members_only():
    allowed = ["enterprise", "gold"]
    assert [raised("in", allowed, v) for v in ("gold", "silver", "")] == [True, False, False]
    assert [raised("not in", allowed, v) for v in ("gold", "silver", "")] == [False, True, True]


@pytest.mark.parametrize(("call", "policy"), [
    (("issue_refund", {"customer_id": 1, "amount": 1000}, None), Policy.SOFT_GATE),
    (("issue_refund", {"customer_id": 1, "amount": 1000.5}, None), Policy.HARD_GATE),
    (("send_mass_email", {"list_name": "x"}, {"recipients": 100}), Policy.SOFT_GATE),
    (("send_mass_email", {"list_name": "x"}, {"recipients": 101}), Policy.HARD_GATE),
])
def test_the_kits_own_rules_at_their_thresholds(call, policy):
    assert DEFAULT.classify(*call).policy is policy


@pytest.mark.parametrize("order", ["high rule first", "low rule first"])
def test_two_rules_on_one_tool_keep_the_highest_class_whatever_their_order(order):
    """Both rules hold: the later one must not lower what the earlier one raised."""
    rules = [("update_thing", "args.n", ">", 10, "irreversible_high"),
             ("update_thing", "args.n", ">", 5, "irreversible_low")]
    if order == "low rule first":
        rules.reverse()
    ruling = ActionPolicy(ONE_TOOL, rules=rules).classify("update_thing", {"n": 50})
    assert (ruling.reversibility, ruling.policy) == ("irreversible_high", Policy.HARD_GATE)
    assert sorted(ruling.raised_by) == ["args.n is 50, > 10", "args.n is 50, > 5"]
    only_low = ActionPolicy(ONE_TOOL, rules=rules).classify("update_thing", {"n": 7})
    assert (only_low.reversibility, only_low.raised_by) == ("irreversible_low",
                                                            ("args.n is 7, > 5",))
