"""Tests for hitl_kit.audit_queries: the trail in pandas, the auditor's queries, the plots."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hitl_kit.audit import DECISIONS, REVERSIBILITY_CLASSES, AuditTrail
from hitl_kit.audit_queries import (
    approval_latency,
    between,
    by_action,
    by_approver,
    by_decision,
    decisions_by_class,
    plot_decisions,
    plot_latency,
    read_trail,
    rejected_high_impact,
)

from .test_audit import T0, proposal, resolution


@pytest.fixture
def sample_trail_path(tmp_path):
    """Four actions: approved (30 s), rejected (120 s), auto-approved (1 s), timed out (300 s)."""
    db_path = tmp_path / "audit.db"
    trail = AuditTrail(db_path, durable=False)
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
    return db_path


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


def test_approval_latency_in_seconds(sample_trail_path):
    latency = approval_latency(read_trail(sample_trail_path))

    assert seqs(latency) == [2, 4, 6, 8]
    assert latency["latency_seconds"].tolist() == [30.0, 120.0, 1.0, 300.0]


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
        assert sum(bar.get_height() for bar in own_ax.patches) == 4
    finally:
        plt.close("all")


def test_importing_the_module_imports_neither_pandas_nor_matplotlib():
    code = ("import sys, hitl_kit.audit_queries; "
            "print(sorted({'pandas', 'matplotlib'} & set(sys.modules)))")
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert result.stdout.strip() == "[]", result.stderr
