"""The questions an auditor asks of the trail, one call each, on a pandas DataFrame.

``read_trail(source)`` opens the trail read-only and returns one row per event, timestamps as
timezone-aware UTC datetimes, ``parameters`` and ``details`` parsed to dicts: a SQLite file, or a
PostgreSQL trail by its URL (log in as the read-only ``hitl_auditor``). The other functions take
that DataFrame, whichever the backend::

    df = read_trail("audit.db")   # or read_trail("postgresql://hitl_auditor@db/hitl")
    rejected_high_impact(between(df, "2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"))
    too_fast_to_read(df)        # approvals made faster than their card can be read

pandas and matplotlib are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import closing

from hitl_kit.audit import (
    COLUMNS,
    DECISIONS,
    REVERSIBILITY_CLASSES,
    SELECT_ROWS_SQL,
    TIMESTAMP_FIELDS,
    open_readonly,
    to_utc_iso,
)
from hitl_kit.vocabulary import Approver, Event, Execution, Verdict

MACHINES = (Approver.AUTO.value, Approver.SYSTEM.value)  # not people: never rubber-stamp
DECISION_EVENTS = (Event.DECIDED.value, Event.RESOLVED.value)  # rows that carry a decision


def read_trail(source: str | os.PathLike):
    """The trail as a DataFrame: timestamps tz-aware UTC, parameters and details parsed.
    ``source``: the SQLite file, or a ``postgresql://`` URL."""
    import pandas as pd

    if isinstance(source, str) and source.startswith(("postgresql://", "postgres://")):
        from hitl_kit.postgres_audit import read_rows

        df = pd.DataFrame.from_records(read_rows(source), columns=list(COLUMNS))
    else:
        with closing(open_readonly(source)) as conn:
            df = pd.read_sql_query(SELECT_ROWS_SQL, conn)
    for field in TIMESTAMP_FIELDS:
        df[field] = pd.to_datetime(df[field], utc=True, format="ISO8601")
    df["parameters"] = df["parameters"].map(json.loads)
    df["details"] = df["details"].map(
        lambda text: json.loads(text) if isinstance(text, str) else None)
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


# --- how long things took -------------------------------------------------------------------------


def approval_latency(df):
    """Rows that carry a decision (``resolved``, and ``decided`` under a two-person rule) with
    ``latency_seconds``: from the proposal to the moment the row was recorded. A timeout shows
    its full deadline here, since that is how long the request waited for a decision. (A
    ``resolved`` row is recorded once the call has run, so its latency includes the run.)"""
    decided = df[df["event"].isin(DECISION_EVENTS)].copy()
    decided["latency_seconds"] = (decided["recorded_at"]
                                  - decided["proposed_at"]).dt.total_seconds()
    return decided


def execution_latency(df):
    """Resolved rows of actions that ran, with ``latency_seconds`` from proposal to execution.
    Actions that never ran (rejected, timed out, expired) have no execution to time and are
    left out, rather than counted with the time their request waited."""
    resolved = df[(df["event"] == Event.RESOLVED) & df["executed_at"].notna()
                  & (df["outcome"] != Execution.NOT_EXECUTED)].copy()
    resolved["latency_seconds"] = (resolved["executed_at"]
                                   - resolved["proposed_at"]).dt.total_seconds()
    return resolved


# --- approval fatigue: who approves what, and how fast --------------------------------------------

# Reading speed for the card, from Brysbaert (2019), "How many words do we read per minute? A
# review and meta-analysis of reading rate": about 238 words per minute for silent reading of
# non-fiction in English. Cards are denser than prose (names, numbers, JSON), so this errs on the
# side of *not* flagging: a real reader needs at least this long.
WORDS_PER_MINUTE = 238
ORIENTING_SECONDS = 2.0  # to find the card, take in its risk badge and reach the button
_WORD = re.compile(r"\w+")


def _words_shown(row) -> int:
    """Words a person had to read on the card for this row: the tool, its arguments (keys and
    values), and what the trail records was shown with them (the rule's explanation, quoted
    provenance, the target). The reason is written by the approver, not read, so it is left
    out."""
    shown = [str(row["action_type"]), json.dumps(row["parameters"], ensure_ascii=False)]
    details = row["details"]
    if isinstance(details, dict):
        shown += [json.dumps(details.get(key), ensure_ascii=False)
                  for key in ("rule", "provenance", "target") if key in details]
    return sum(len(_WORD.findall(text)) for text in shown)


def reading_seconds(words: int, *, words_per_minute: float = WORDS_PER_MINUTE,
                    orienting_seconds: float = ORIENTING_SECONDS) -> float:
    """The least time a person needs to read a card of ``words`` words and decide."""
    return orienting_seconds + 60.0 * words / words_per_minute


def people_decisions(df):
    """``approval_latency`` rows decided by a person (not 'auto', not 'system')."""
    decided = approval_latency(df)
    return decided[~decided["approver_id"].isin(MACHINES) & decided["approver_id"].notna()]


def approver_stats(df):
    """One row per person who decided: how many approvals and rejections, the approve rate,
    the median and fastest approval (seconds), and how many approvals were made faster than
    their card can be read (``too_fast_to_read`` with its defaults). Sorted by approve rate.
    A high approve rate together with many too-fast approvals is what rubber-stamping looks
    like; each alone can be innocent (a well-tuned policy only asks about good calls)."""
    import pandas as pd

    decided = people_decisions(df)
    approved = decided[decided["decision"] == Verdict.APPROVED]
    fast = too_fast_to_read(df)
    grouped = decided.groupby("approver_id")
    stats = pd.DataFrame({
        "decisions": grouped.size(),
        "approvals": approved.groupby("approver_id").size(),
        "rejections": decided[decided["decision"] == Verdict.REJECTED].groupby(
            "approver_id").size(),
        "median_approval_s": approved.groupby("approver_id")["latency_seconds"].median(),
        "fastest_approval_s": approved.groupby("approver_id")["latency_seconds"].min(),
        "too_fast_to_read": fast.groupby("approver_id").size(),
    })
    counts = ["decisions", "approvals", "rejections", "too_fast_to_read"]
    stats[counts] = stats[counts].fillna(0).astype(int)
    stats["approve_rate"] = stats["approvals"] / stats["decisions"]
    stats = stats[["decisions", "approvals", "rejections", "approve_rate", "median_approval_s",
                   "fastest_approval_s", "too_fast_to_read"]]
    return stats.sort_values(["approve_rate", "decisions"], ascending=False)


def too_fast_to_read(df, *, min_seconds: float | None = None,
                     words_per_minute: float = WORDS_PER_MINUTE,
                     orienting_seconds: float = ORIENTING_SECONDS):
    """Approvals by people made faster than their card can be read: the alert against
    rubber-stamping.

    The time needed is ``orienting_seconds`` plus the words the card showed at
    ``words_per_minute`` (see ``WORDS_PER_MINUTE`` for where the figure comes from), so a long
    argument list or a quoted email needs longer than ``read_customer(3)``. ``min_seconds``
    replaces that estimate with one fixed threshold for every card. Returns the flagged rows
    with ``latency_seconds``, ``words_shown`` and ``needed_seconds``.

    Limits: the trail knows what was shown only as far as it records it (arguments, details);
    latency is measured to the moment the row was recorded, so it can only overstate how long
    the person looked, never understate it.
    """
    decided = people_decisions(df)
    approved = decided[decided["decision"] == Verdict.APPROVED].copy()
    approved["words_shown"] = [_words_shown(row) for _, row in approved.iterrows()]
    if min_seconds is not None:
        approved["needed_seconds"] = float(min_seconds)
    else:
        approved["needed_seconds"] = [
            reading_seconds(words, words_per_minute=words_per_minute,
                            orienting_seconds=orienting_seconds)
            for words in approved["words_shown"]]
    return approved[approved["latency_seconds"] < approved["needed_seconds"]]


# --- plots ----------------------------------------------------------------------------------------


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
    """Histogram of ``execution_latency`` in seconds (actions that ran). Returns the Axes."""
    ax = _new_axes() if ax is None else ax
    ax.hist(execution_latency(df)["latency_seconds"])
    ax.set(title="Proposal to execution", xlabel="seconds", ylabel="actions")
    return ax
