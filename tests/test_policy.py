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
