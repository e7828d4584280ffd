"""The runnable examples in the docstrings of the public modules run, and say what they show."""

import doctest
import importlib

import pytest

MODULES = ["vocabulary", "sqlite", "identity", "contract", "policy", "approvers", "provenance",
           "graph", "ledger", "approval", "recovery", "timeouts", "audit", "backends", "render",
           "server"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"hitl_kit.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) of hitl_kit.{name} failed"


def test_every_public_entry_point_has_an_example():
    from hitl_kit.approval import ApprovalAgent
    from hitl_kit.audit import AuditTrail
    from hitl_kit.ledger import DecisionLedger
    from hitl_kit.timeouts import Deadline

    for entry in (ApprovalAgent, AuditTrail, DecisionLedger, Deadline):
        module = importlib.import_module(entry.__module__)
        shown = (entry.__doc__ or "") + (module.__doc__ or "")
        assert ">>>" in shown, f"{entry.__name__} has no runnable example in its docstrings"
