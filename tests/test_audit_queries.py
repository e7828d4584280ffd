"""Tests for hitl_kit.audit_queries: the trail in pandas, the auditor's queries, the plots."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hitl_kit.audit import DECISIONS, REVERSIBILITY_CLASSES, AuditTrail
from hitl_kit.audit_queries import (
    WORDS_PER_MINUTE,
    approval_latency,
    approver_stats,
    between,
    by_action,
    by_approver,
    by_decision,
    decisions_by_class,
    execution_latency,
    plot_decisions,
    plot_latency,
    read_trail,
    reading_seconds,
    rejected_high_impact,
    too_fast_to_read,
)

from .test_audit import T0, proposal, resolution


@pytest.fixture
def sample_trail_path(backend, tmp_path):
    """Four actions: approved (30 s), rejected (120 s), auto-approved (1 s), timed out (300 s),
    on each backend; what read_trail reads (the SQLite file, or the auditor's PostgreSQL URL):
    the queries below are the same for both."""
    trail = backend.audit(tmp_path)
    at = {n: T0 + timedelta(minutes=n) for n in (0, 1, 5, 10)}
    trail.append(proposal(0, recorded_at=at[0], proposed_at=at[0]))
    trail.append(resolution(0, proposed_at=at[0], executed_at=at[0] + timedelta(seconds=30),
                            recorded_at=at[0] + timedelta(seconds=31)))  # fmt: skip
    trail.append(proposal(1, recorded_at=at[1], proposed_at=at[1], action_type="drop_table",
                          reversibility_class="irreversible_high"))  # fmt: skip
    trail.append(resolution(1, recorded_at=at[1] + timedelta(seconds=120), proposed_at=at[1],
                            action_type="drop_table", reversibility_class="irreversible_high",
                            approver_id="bob", decision="rejected", outcome="not_executed",
                            executed_at=None))  # fmt: skip
    trail.append(proposal(5, recorded_at=at[5], proposed_at=at[5], action_type="read_file",
                          reversibility_class="fully_reversible"))  # fmt: skip
    trail.append(resolution(5, recorded_at=at[5] + timedelta(seconds=2), proposed_at=at[5],
                            action_type="read_file", reversibility_class="fully_reversible",
                            approver_id="auto", decision="auto-approved", channel="policy",
                            executed_at=at[5] + timedelta(seconds=1)))  # fmt: skip
    trail.append(proposal(10, recorded_at=at[10], proposed_at=at[10]))
    trail.append(resolution(10, recorded_at=at[10] + timedelta(seconds=300), proposed_at=at[10],
                            approver_id="system", decision="timed-out", outcome="not_executed",
                            channel="timer",
                            executed_at=None))  # fmt: skip
    trail.close()
    return backend.trail_source(tmp_path)


def seqs(df) -> list[int]:
    return df["seq"].tolist()


def test_read_trail_gives_utc_datetimes_and_parsed_parameters(sample_trail_path):
    import pandas as pd

    df = read_trail(sample_trail_path)

    assert seqs(df) == list(range(1, 9))
    for column in ("recorded_at", "proposed_at", "executed_at"):
        assert isinstance(df[column].dtype, pd.DatetimeTZDtype)
        assert str(df[column].dt.tz) == "UTC"
    assert df.loc[0, "proposed_at"] == pd.Timestamp(T0)
    assert df.loc[0, "parameters"] == {"to": "ana@example.com", "n": 0}
    assert df["executed_at"].isna().tolist() == [True, False, True, True, True, False, True, True]


def test_auditor_queries_return_the_right_rows(sample_trail_path):
    df = read_trail(sample_trail_path)

    # recorded at 60 s, 180 s, 300 s, 302 s; the row at exactly 600 s is excluded
    assert seqs(between(df, T0 + timedelta(minutes=1), T0 + timedelta(minutes=10))) == [3, 4, 5, 6]
    assert seqs(between(df, "2026-11-26T21:30:00+00:00", "2026-11-26T21:30:31+00:00")) == [1]
    assert seqs(by_action(df, "drop_table")) == [3, 4]
    assert seqs(by_approver(df, "bob")) == [4]
    assert seqs(by_approver(df, "system")) == [8]
    assert seqs(by_decision(df, "auto-approved")) == [6]
    assert seqs(rejected_high_impact(df)) == [4]
    with pytest.raises(ValueError, match="decision"):
        by_decision(df, "approve")
    with pytest.raises(ValueError, match="no timezone"):
        between(df, datetime(2026, 11, 26), T0)


def test_approval_latency_is_proposal_to_decision(sample_trail_path):
    latency = approval_latency(read_trail(sample_trail_path))

    assert seqs(latency) == [2, 4, 6, 8]
    assert latency["latency_seconds"].tolist() == [31.0, 120.0, 2.0, 300.0]


def test_execution_latency_leaves_out_actions_that_never_ran(sample_trail_path):
    """The timed-out and the rejected action have no execution to time (issue 13: the plot
    showed the timeout's 300 s as if it had run)."""
    latency = execution_latency(read_trail(sample_trail_path))

    assert seqs(latency) == [2, 6]
    assert latency["latency_seconds"].tolist() == [30.0, 1.0]


def test_plots_return_axes_with_the_data(sample_trail_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = read_trail(sample_trail_path)
    try:
        ax = plot_decisions(df)
        assert isinstance(ax, plt.Axes)
        classes = [tick.get_text() for tick in ax.get_xticklabels()]
        assert classes == list(REVERSIBILITY_CLASSES)
        heights = [bar.get_height() for bar in ax.patches]  # decision by decision, class by class
        by_cell = {(d, c): h for (d, c), h in zip(
            [(d, c) for d in DECISIONS for c in classes], heights, strict=True)}
        assert {k: v for k, v in by_cell.items() if v} == {
            ("approved", "irreversible_low"): 1, ("rejected", "irreversible_high"): 1,
            ("auto-approved", "fully_reversible"): 1, ("timed-out", "irreversible_low"): 1}
        assert decisions_by_class(df).loc["irreversible_low", "timed-out"] == 1

        _, own_ax = plt.subplots()
        assert plot_latency(df, ax=own_ax) is own_ax
        assert sum(bar.get_height() for bar in own_ax.patches) == 2  # the two that ran
    finally:
        plt.close("all")


def test_importing_the_module_imports_neither_pandas_nor_matplotlib():
    code = ("import sys, hitl_kit.audit_queries; "
            "print(sorted({'pandas', 'matplotlib'} & set(sys.modules)))")
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert result.stdout.strip() == "[]", result.stderr


# --- approval fatigue -----------------------------------------------------------------------------

LONG_EMAIL = " ".join(["word"] * 238)  # one minute of reading at WORDS_PER_MINUTE


@pytest.fixture
def approvers_trail_path(tmp_path):
    """Two approvers. 'stamp' approves everything at once, long cards included; 'care' takes
    the time a card needs and rejects one. A two-person request (decided + resolved) and a
    refused attempt, which is not a decision."""
    db_path = tmp_path / "audit.db"
    trail = AuditTrail(db_path, durable=False)

    def action(n, approver, seconds, decision="approved", body="hi", **extra):
        at = T0 + timedelta(minutes=10 * n)
        args = {"thread_id": n, "body": body}
        trail.append(proposal(n, proposed_at=at, recorded_at=at, parameters=args))
        ran = decision == "approved"
        trail.append(resolution(n, proposed_at=at, parameters=args, approver_id=approver,
                                recorded_at=at + timedelta(seconds=seconds), decision=decision,
                                outcome="success" if ran else "not_executed",
                                executed_at=at + timedelta(seconds=seconds) if ran else None,
                                **extra))

    action(1, "stamp", 1)
    action(2, "stamp", 2, body=LONG_EMAIL)  # a minute of reading, approved in 2 s
    action(3, "stamp", 90, body=LONG_EMAIL)  # long enough
    action(4, "care", 40)
    action(5, "care", 30, decision="rejected")
    action(6, "care", 75, body=LONG_EMAIL)
    at = T0 + timedelta(minutes=70)
    trail.append(proposal(7, proposed_at=at, recorded_at=at))
    trail.append({**proposal(7), "event_key": "thread-1:call-7:decided:stamp", "event": "decided",
                  "channel": "card", "approver_id": "stamp", "decision": "approved",
                  "proposed_at": at, "recorded_at": at + timedelta(seconds=1)})
    trail.append({**proposal(7), "event_key": "thread-1:call-7:refused:rita", "event": "refused",
                  "channel": "link", "approver_id": "rita", "reason": "rita requested it",
                  "proposed_at": at, "recorded_at": at + timedelta(seconds=5)})
    trail.append(resolution(7, proposed_at=at, recorded_at=at + timedelta(seconds=50),
                            approver_id="care", executed_at=at + timedelta(seconds=50)))
    trail.append(resolution(8, proposed_at=at, recorded_at=at + timedelta(seconds=1),
                            approver_id="auto", decision="auto-approved", channel="policy",
                            executed_at=at + timedelta(seconds=1)))
    trail.close()
    return db_path


def test_reading_time_grows_with_the_words_shown():
    assert reading_seconds(0) == 2.0
    assert reading_seconds(WORDS_PER_MINUTE) == pytest.approx(62.0)
    assert reading_seconds(119, words_per_minute=119, orienting_seconds=0) == pytest.approx(60)


def test_too_fast_to_read_flags_approvals_quicker_than_their_card(approvers_trail_path):
    df = read_trail(approvers_trail_path)
    fast = too_fast_to_read(df)

    # stamp's 1 s on a short card, 2 s on a minute-long one, and the 1 s two-person approval;
    # not 90 s on the long card, none of care's, not auto (a machine), not a rejection
    assert [(r.approver_id, r.action_type, r.event) for r in fast.itertuples()] == [
        ("stamp", "send_email", "resolved"), ("stamp", "send_email", "resolved"),
        ("stamp", "send_email", "decided")]
    long_card = fast[fast["latency_seconds"] == 2.0].iloc[0]
    assert long_card["words_shown"] > 238 and long_card["needed_seconds"] > 60

    fixed = too_fast_to_read(df, min_seconds=45)  # one threshold for every card
    assert sorted(fixed["latency_seconds"]) == [1.0, 1.0, 2.0, 40.0]


def test_approver_stats_show_rate_speed_and_fast_approvals(approvers_trail_path):
    stats = approver_stats(read_trail(approvers_trail_path))

    assert stats.index.tolist() == ["stamp", "care"]  # by approve rate
    stamp, care = stats.loc["stamp"], stats.loc["care"]
    assert (stamp["decisions"], stamp["approvals"], stamp["rejections"]) == (4, 4, 0)
    assert (care["decisions"], care["approvals"], care["rejections"]) == (4, 3, 1)
    assert stamp["approve_rate"] == 1.0 and care["approve_rate"] == 0.75
    assert stamp["median_approval_s"] == 1.5 and stamp["fastest_approval_s"] == 1.0
    assert care["median_approval_s"] == 50.0
    assert (stamp["too_fast_to_read"], care["too_fast_to_read"]) == (3, 0)
    assert "auto" not in stats.index and "rita" not in stats.index


def test_read_trail_parses_details(approvers_trail_path, tmp_path):
    with AuditTrail(tmp_path / "d.db", durable=False) as trail:
        trail.append(proposal(1, details={"rule": {"rule": "amount > 1000"}}))
        trail.append(proposal(2))
    df = read_trail(tmp_path / "d.db")
    assert df["details"].tolist() == [{"rule": {"rule": "amount > 1000"}}, None]
