"""The questions an auditor asks of the trail, one call each, on a pandas DataFrame.

``read_trail(path)`` opens the database read-only and returns one row per event, timestamps as
timezone-aware UTC datetimes. The other functions take that DataFrame::

    df = read_trail("audit.db")
    rejected_high_impact(between(df, "2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"))

pandas and matplotlib are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
from contextlib import closing

from hitl_kit.audit import (
    DECISIONS,
    REVERSIBILITY_CLASSES,
    SELECT_ROWS_SQL,
    TIMESTAMP_FIELDS,
    open_readonly,
    to_utc_iso,
)


def read_trail(path: str | os.PathLike):
    """The trail as a DataFrame: timestamps tz-aware UTC, parameters parsed to dicts."""
    import pandas as pd

    with closing(open_readonly(path)) as conn:
        df = pd.read_sql_query(SELECT_ROWS_SQL, conn)
    for field in TIMESTAMP_FIELDS:
        df[field] = pd.to_datetime(df[field], utc=True, format="ISO8601")
    df["parameters"] = df["parameters"].map(json.loads)
    return df


def between(df, start, end):
    """Rows recorded from start (included) to end (excluded); both need a timezone."""
    import pandas as pd

    start = pd.Timestamp(to_utc_iso("start", start))
    end = pd.Timestamp(to_utc_iso("end", end))
    return df[(df["recorded_at"] >= start) & (df["recorded_at"] < end)]


def by_action(df, action_type: str):
    """Rows for one tool."""
    return df[df["action_type"] == action_type]


def by_approver(df, approver_id: str):
    """Rows decided by one approver ('auto' and 'system' included)."""
    return df[df["approver_id"] == approver_id]


def by_decision(df, decision: str):
    """Resolved rows with one decision."""
    if decision not in DECISIONS:
        raise ValueError(f"decision is {decision!r}; use one of {', '.join(DECISIONS)}")
    return df[df["decision"] == decision]


def rejected_high_impact(df):
    """Irreversible, high-impact actions that a person rejected."""
    return df[(df["decision"] == "rejected") & (df["reversibility_class"] == "irreversible_high")]


def approval_latency(df):
    """Resolved rows with ``latency_seconds``: from proposal to execution, or to the resolution
    being recorded when the action did not run."""
    resolved = df[df["event"] == "resolved"].copy()
    finished_at = resolved["executed_at"].fillna(resolved["recorded_at"])
    resolved["latency_seconds"] = (finished_at - resolved["proposed_at"]).dt.total_seconds()
    return resolved


def _new_axes():
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def decisions_by_class(df):
    """Resolved actions counted by reversibility class (rows) and decision (columns)."""
    import pandas as pd

    resolved = df[df["event"] == "resolved"]
    table = pd.crosstab(resolved["reversibility_class"], resolved["decision"])
    return table.reindex(index=list(REVERSIBILITY_CLASSES), columns=list(DECISIONS),
                         fill_value=0)


def plot_decisions(df, ax=None):
    """Stacked bars: the decisions taken in each reversibility class. Returns the Axes."""
    ax = _new_axes() if ax is None else ax
    table = decisions_by_class(df)
    bottom = [0] * len(table)
    for decision in table.columns:
        heights = table[decision].tolist()
        ax.bar(table.index.tolist(), heights, bottom=bottom, label=decision)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set(title="Decisions by reversibility class", xlabel="class", ylabel="actions")
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend()
    return ax


def plot_latency(df, ax=None):
    """Histogram of approval_latency in seconds. Returns the Axes."""
    ax = _new_axes() if ax is None else ax
    ax.hist(approval_latency(df)["latency_seconds"].dropna())
    ax.set(title="Proposal to execution", xlabel="seconds", ylabel="actions")
    return ax
