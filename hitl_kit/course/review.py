"""End of day: a self-quiz with model answers, the checklist, and a weak-area log.

Answer a question in your own words first, then reveal the model answer and its key points; the
kit says which key points your answer already touches (a rough word match, meant as a nudge, not
a grade). The checklist reads ``hitl_kit.course.progress``: drill items tick themselves from real
self-check results.
"""

from __future__ import annotations

import html
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets

from hitl_kit.cards import unattended
from hitl_kit.course.progress import CHECKLIST, PROGRESS_ENV, Progress


def notebook_progress() -> Progress:
    """Your progress, for a notebook to show. An unattended run (``HITL_KIT_UNATTENDED=1``) gets
    a throwaway progress file instead, for the rest of the kernel's life, unless
    ``HITL_KIT_PROGRESS`` names one: a headless run must never change your real progress."""
    if unattended() and not os.environ.get(PROGRESS_ENV):
        scratch = Path(tempfile.mkdtemp(prefix="hitl-progress-")) / "progress.json"
        os.environ[PROGRESS_ENV] = str(scratch)
    return Progress()


@dataclass(frozen=True)
class KeyPoint:
    point: str
    words: tuple[str, ...]  # any of these in an answer counts as touching the point


@dataclass(frozen=True)
class Question:
    text: str
    model_answer: str
    key_points: tuple[KeyPoint, ...]

    def touched(self, answer: str) -> list[bool]:
        lowered = answer.lower()
        return [any(w in lowered for w in kp.words) for kp in self.key_points]


QUESTIONS = [
    Question(
        "When must an agent system have a human in the loop?",
        "When a mistake would be expensive to undo. That covers actions that cannot be reversed "
        "(deleting data, messages to many people, production deploys, public posts), actions "
        "with real financial weight (purchases, invoices, pricing), anything a regulation says a "
        "person must sign off (finance, health data, privacy law), and the early phase of a "
        "rollout when nobody has yet seen the agent decide well. Everything else should run "
        "automatically with logging: gating it only trains approvers to click without reading.",
        (KeyPoint("irreversible actions", ("irreversib", "undo", "cannot be reversed")),
         KeyPoint("financial impact", ("financ", "money", "purchase", "pricing", "cost")),
         KeyPoint("compliance or regulation", ("complian", "regulat", "legal", "sox", "gdpr")),
         KeyPoint("trust early in deployment", ("trust", "early", "rollout", "deployment")),
         KeyPoint("automate the rest; over-gating has a cost",
                  ("over-gat", "fatigue", "rubber", "automat", "everything else"))),
    ),
    Question(
        "How do you pause and resume an agent for approval in LangGraph?",
        "Compile the graph with a checkpointer and call interrupt(payload) inside the node that "
        "gates the action, only for calls that need a human. The graph saves a checkpoint and "
        "returns with the payload under __interrupt__. Show that payload to a person; when they "
        "answer, invoke the graph with Command(resume=decision) and the same thread_id. The node "
        "then runs again from its first line and interrupt() returns the decision, so nothing "
        "with a side effect may come before it. Use a durable checkpointer (SqliteSaver, "
        "Postgres) so a pending approval outlives the process, and check the thread really is "
        "paused before resuming: LangGraph starts a new run for an unknown thread id.",
        (KeyPoint("interrupt() inside the gating node", ("interrupt(",)),
         KeyPoint("a checkpointer saves the state", ("checkpoint", "saver")),
         KeyPoint("Command(resume=...) on the same thread_id", ("command", "resume", "thread")),
         KeyPoint("the node re-runs: no side effects before interrupt()",
                  ("re-run", "rerun", "runs again", "side effect", "from the start")),
         KeyPoint("durable storage for real pauses", ("sqlite", "postgres", "durable", "persist"))),
    ),
    Question(
        "How do you design an audit trail for agent actions?",
        "Append-only and structured: every proposed action gets a row when it is proposed and "
        "another when it is decided and executed, with a timestamp at both moments, the session, "
        "the tool and its parameters (secrets redacted), the reversibility class, who approved "
        "it ('auto' or 'system' when no person did), the decision and the outcome. Make the store "
        "refuse edits (triggers, a connection that may only insert, an object-locked bucket) and "
        "make tampering visible with a hash chain whose head is kept elsewhere. Keep it out of "
        "the agent's own state, and make it queryable by date, action, approver and decision.",
        (KeyPoint("append-only, the agent cannot edit or delete", ("append", "immutable",
                                                                  "no update", "no delete")),
         KeyPoint("who, what, when, decision, outcome", ("approver", "who")),
         KeyPoint("timestamped at proposal and at execution", ("proposal", "proposed", "execut")),
         KeyPoint("tamper evidence", ("hash", "tamper", "verify", "object lock")),
         KeyPoint("queryable", ("query", "filter", "sql", "pandas"))),
    ),
    Question(
        "A reviewer clicks Approve just as the approval times out. What can go wrong, and how do "
        "you prevent it?",
        "Both paths resume the graph: measured with LangGraph, two concurrent resumes on one "
        "paused thread both run the next node, so the action can execute twice, once approved "
        "and once rejected. Decide first, then resume: claim the pending request atomically (one "
        "row per request, the first INSERT wins) bound to its interrupt id and a fingerprint of "
        "what was shown, cancel the timer when a person wins, and answer every later attempt "
        "with who already decided and how.",
        (KeyPoint("both resume: double execution", ("twice", "double", "both")),
         KeyPoint("exactly one decision wins, atomically", ("atomic", "lock", "exactly one",
                                                            "first", "claim")),
         KeyPoint("bind the decision to what was shown", ("fingerprint", "interrupt id", "bound")),
         KeyPoint("cancel the timer", ("cancel",))),
    ),
    Question(
        "What should an approval request show the approver?",
        "Enough to decide without digging: what the agent was asked to do, the exact tool and "
        "arguments, the current state of what it would touch (the record itself, the number of "
        "recipients), what happens on approve and on reject, and the risk level and why it was "
        "gated. All of it rendered as text: it came from a model or from data.",
        (KeyPoint("the goal of the task", ("task", "goal", "trying", "asked")),
         KeyPoint("the action and its arguments", ("argument", "tool", "action")),
         KeyPoint("the current contents of the target", ("record", "contents", "current")),
         KeyPoint("what approve and reject each do", ("reject",)),
         KeyPoint("the risk", ("risk",))),
    ),
]


class QuizCard(widgets.VBox):
    """One question: write an answer, then reveal the model answer and the key points."""

    def __init__(self, number: int, question: Question):
        self.question = question
        self.answer = widgets.Textarea(placeholder="your answer first", layout={"width": "90%"})
        self.reveal = widgets.Button(description="Reveal model answer", layout={"width": "auto"})
        self.shown = widgets.HTML()
        self.reveal.on_click(lambda _b: self.show())
        super().__init__([widgets.HTML(f"<b>Q{number}.</b> {html.escape(question.text)}"),
                          self.answer, self.reveal, self.shown])

    def show(self) -> None:
        touched = self.question.touched(self.answer.value)
        points = "".join(
            f"<li>{'&#10003;' if hit else '&#9744;'} {html.escape(kp.point)}</li>"
            for kp, hit in zip(self.question.key_points, touched, strict=True))
        self.shown.value = (f"<p>{html.escape(self.question.model_answer)}</p>"
                            f"<p>Key points ({sum(touched)} of {len(touched)} in your answer):"
                            f"</p><ul>{points}</ul>")


def quiz() -> widgets.VBox:
    return widgets.VBox([QuizCard(n, q) for n, q in enumerate(QUESTIONS, start=1)])


class ChecklistPanel(widgets.VBox):
    """The end-of-day checklist: drill items from results, the rest ticked by the learner."""

    def __init__(self, progress: Progress | None = None):
        self.progress = progress or Progress()
        self.boxes: dict[str, widgets.Checkbox] = {}
        super().__init__()
        self.refresh()

    def refresh(self) -> None:
        rows = []
        for item, done, how in self.progress.checklist():
            box = widgets.Checkbox(value=done, description=item, indent=False,
                                   layout={"width": "60%"})
            learner_owned = dict(CHECKLIST)[item] == "learner"
            box.disabled = not learner_owned
            if learner_owned:
                box.observe(lambda change, item=item: self.progress.tick(item, change["new"]),
                            names="value")
            self.boxes[item] = box
            rows.append(widgets.HBox([box, widgets.Label(how)]))
        self.children = rows


class WeakAreaLog(widgets.VBox):
    """Write down what to revise; it is saved with your progress."""

    def __init__(self, progress: Progress | None = None, on_saved=None):
        self.progress = progress or Progress()
        self.text = widgets.Text(placeholder="e.g. when a soft gate is enough",
                                 layout={"width": "60%"})
        self.save = widgets.Button(description="Log weak area")
        self.status = widgets.HTML()
        self.on_saved = on_saved
        self.save.on_click(lambda _b: self.log())
        super().__init__([widgets.HBox([self.text, self.save]), self.status])
        self._show_log()

    def log(self) -> None:
        try:
            self.progress.add_weak_area(self.text.value)
        except ValueError as exc:
            self.status.value = f"<i>{html.escape(str(exc))}</i>"
            return
        self.text.value = ""
        self._show_log()
        if self.on_saved:
            self.on_saved()

    def _show_log(self) -> None:
        items = "".join(f"<li>{html.escape(w['text'])}</li>"
                        for w in self.progress.data["weak_areas"])
        self.status.value = f"<ul>{items}</ul>" if items else "<i>nothing logged yet</i>"
