"""The synchronous pattern for developer tools: approve in the terminal with ``input()``.

Blocking is fine here: a terminal has nothing else to do while the developer reads. (In a
notebook it is not: see ``hitl_kit.cards``.) Every line is made visible first
(``hitl_kit.render``): a bidi override or a zero-width character would otherwise act on the
terminal itself, or hide in what the developer approves.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from hitl_kit.approval import AlreadyDecided, ApprovalAgent, ApprovalError, Outcome
from hitl_kit.render import claim_line, payload_rows, visible
from hitl_kit.vocabulary import Channel

CHOICES = {"a": "approve", "r": "reject", "e": "edit"}


def approve_in_terminal(agent: ApprovalAgent, outcome: Outcome, approver: str,
                        ask: Callable[[str], str] = input,
                        say: Callable[[str], None] = print) -> Outcome:
    """Ask about each pending approval until the thread finishes.

    End of input (Ctrl-D, a closed pipe) leaves the approval pending: no answer is not a yes.
    """
    while outcome.paused:
        pending = outcome.pending[0]
        say("")
        for label, text in payload_rows(pending.request):
            say(f"{label:>20}: {text}")
        try:
            choice = ask("approve, reject or edit? [a/r/e] ").strip().lower()[:1]
            if choice not in CHOICES:
                say("please answer a, r or e")
                continue
            decision = {"kind": CHOICES[choice], "approver": approver,
                        "fingerprint": pending.fingerprint}
            if choice == "r":
                decision["reason"] = ask("reason (sent to the agent): ")
            if choice == "e":
                try:
                    decision["args"] = json.loads(ask("new arguments as JSON: "))
                except json.JSONDecodeError as exc:
                    say(f"not JSON ({exc}); nothing was sent")
                    continue
        except EOFError:
            if agent.durability == "sync":  # a durable checkpointer keeps the thread
                say("no answer: nothing runs, and the approval stays pending (answer it later "
                    "with `.venv/bin/python -m hitl_kit resume --state DIR`)")
            else:
                say("no answer: nothing runs, and since this run keeps its state in memory "
                    "only, the request ends with it (use --state DIR to keep it pending)")
            return outcome
        try:
            outcome = agent.resume(outcome.thread_id, {pending.interrupt_id: decision},
                                   channel=Channel.CLI)
        except AlreadyDecided as exc:  # someone else (or a timeout) answered first
            say(f"not applied: this request was already {claim_line(exc.claim)}")
            outcome = agent.outcome(outcome.thread_id)
        except ApprovalError as exc:
            say(f"refused, nothing ran: {visible(str(exc))}")
    say(visible(outcome.answer or "", multiline=True))
    return outcome
