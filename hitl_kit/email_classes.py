"""SPOILER for drill 1 (drills/01_classify_email_actions.ipynb): do the drill first.

The classes of the demo email assistant's ten tools. The demo world tags its tools with them
(``hitl_kit.policy.ACTION_TABLE`` includes these rows), so they are part of the runtime; they
live in a module of their own so that the modules notebook 01 points to never give the drill
away, and notebook 01 shows ``SHOWN_ACTIONS``, the table without them.
"""

EMAIL_ASSISTANT_ACTIONS: list[tuple[str, str]] = [
    ("read_inbox", "fully_reversible"),
    ("search_mail", "fully_reversible"),
    ("draft_reply", "fully_reversible"),
    ("archive_thread", "fully_reversible"),  # it leaves the inbox, and can be moved back
    ("add_contact", "partially_reversible"),
    ("set_rule", "partially_reversible"),  # future mail only; the rule can be removed
    ("create_calendar_event", "partially_reversible"),  # own calendar, no invitations sent
    ("send_reply", "irreversible_low"),  # one message to one known sender
    ("unsubscribe", "irreversible_low"),  # the request has left once sent
    ("delete_thread", "irreversible_high"),  # skips the trash
]
