"""Drill 1's mutants: wrong rows in EMAIL_TABLE, and lookups that fail open or crash."""

from tests.mutants import Mutant

CLASSIFIED = "every action is classified with a known class and policy"
FOLLOWS = "each policy follows from its class"
UNDOABLE = "reads, searches, drafts and archiving run without a human"
SENDS = "sending waits for a human"
HARD = "permanent deletion waits for a hard gate"
KNOWN = "policy_for returns the table's policy for every action in it"
UNKNOWN = "policy_for fails closed for every action not in the table"

LOOKUP = 'EMAIL_TABLE.get(action, (None, "hard_gate"))'
BODY = '''    _klass, policy = EMAIL_TABLE.get(action, (None, "hard_gate"))
    return policy'''

MUTANTS = [
    Mutant("a-send-left-ungated", "a reply goes out with nobody asked",
           (('"send_reply": ("irreversible_low", "soft_gate")',
             '"send_reply": ("fully_reversible", "auto_execute")'),),
           {SENDS: "send_reply: auto_execute"}),
    Mutant("over-gating-a-read", "approvers drown in reads and click Approve blindly",
           (('"read_inbox": ("fully_reversible", "auto_execute")',
             '"read_inbox": ("irreversible_high", "hard_gate")'),),
           {UNDOABLE: "read_inbox: hard_gate"}),
    Mutant("policy-contradicts-class", "the class says one thing, the gate another",
           (('"set_rule": ("partially_reversible", "auto_with_logging")',
             '"set_rule": ("partially_reversible", "hard_gate")'),),
           {FOLLOWS: "set_rule: partially_reversible calls for auto_with_logging"}),
    Mutant("deletion-behind-a-soft-gate",
           "a permanent deletion runs when the approver is away (soft and hard gates differ)",
           (('"delete_thread": ("irreversible_high", "hard_gate")',
             '"delete_thread": ("irreversible_low", "soft_gate")'),),
           {HARD: "delete_thread: soft_gate"}, subtle=True),
    Mutant("misspelt-class", "a class nobody's code knows",
           (('"add_contact": ("partially_reversible"', '"add_contact": ("partly_reversible"'),),
           {CLASSIFIED: "add_contact: class 'partly_reversible'"}),
    Mutant("forgotten-action", "an action left out of the table",
           (('    "search_mail": ("fully_reversible", "auto_execute"),\n', ''),),
           {CLASSIFIED: "search_mail: missing"}),
    Mutant("lookup-fails-open", "the default lets unknown tools run",
           ((LOOKUP, 'EMAIL_TABLE.get(action, (None, "auto_execute"))'),),
           {UNKNOWN: "run without a hard gate"}),
    Mutant("lookup-raises-for-unknown", "an unknown tool crashes the agent",
           ((LOOKUP, "EMAIL_TABLE[action]"),),
           {UNKNOWN: "crashes on an action that is not in the table"}),
    Mutant("unknown-gets-a-soft-gate", "an unclassified tool runs when nobody answers",
           ((LOOKUP, 'EMAIL_TABLE.get(action, (None, "soft_gate"))'),),
           {UNKNOWN: "a soft gate"}, subtle=True),
    Mutant("default-spelt-in-capitals", "a policy name no gate recognises",
           ((LOOKUP, 'EMAIL_TABLE.get(action, (None, "HARD_GATE"))'),),
           {UNKNOWN: "not a policy name"}),
    Mutant("lower-cases-the-name", "'Read_Inbox' is taken for read_inbox",
           ((LOOKUP, 'EMAIL_TABLE.get(action.lower(), (None, "hard_gate"))'),),
           {UNKNOWN: "in other capitals"}, subtle=True),
    Mutant("strips-the-name", "' read_inbox' is taken for read_inbox",
           ((LOOKUP, 'EMAIL_TABLE.get(action.strip(), (None, "hard_gate"))'),),
           {UNKNOWN: "other spacing"}, subtle=True),
    Mutant("normalises-unicode", "a full-width look-alike is taken for the real name",
           ((LOOKUP, 'EMAIL_TABLE.get(__import__("unicodedata").normalize("NFKC", action), '
                     '(None, "hard_gate"))'),),
           {UNKNOWN: "look-alike"}, subtle=True),
    Mutant("prefix-match", "read_inbox_and_send_reply runs as read_inbox",
           ((BODY, '''    for name, (_klass, policy) in EMAIL_TABLE.items():
        if action.startswith(name):
            return policy
    return "hard_gate"'''),),
           {UNKNOWN: "added or cut"}, subtle=True),
    Mutant("guesses-from-the-verb", "anything starting with read/search/draft is let through",
           ((BODY, '''    if action.startswith(("read", "search", "draft")):
        return "auto_execute"
''' + BODY),),
           {UNKNOWN: "run without a hard gate"}, subtle=True),
    Mutant("closest-match", "a fuzzy match maps an unknown tool onto a known one",
           ((LOOKUP, 'EMAIL_TABLE.get((__import__("difflib").get_close_matches(action, '
                     'EMAIL_TABLE, n=1) or [action])[0], (None, "hard_gate"))'),),
           {UNKNOWN: "run without a hard gate"}, subtle=True),
    Mutant("setdefault-writes-the-table", "every lookup of an unknown name adds a row",
           ((LOOKUP, 'EMAIL_TABLE.setdefault(action, (None, "hard_gate"))'),),
           {UNKNOWN: "changes EMAIL_TABLE"}, subtle=True),
    Mutant("unsubscribe-taken-for-undoable", "'you can always resubscribe': the request has left",
           (('"unsubscribe": ("irreversible_low", "soft_gate")',
             '"unsubscribe": ("partially_reversible", "auto_with_logging")'),),
           {SENDS: "unsubscribe: auto_with_logging"}, subtle=True),
    Mutant("normalises-separators", "'read-inbox' and 'read inbox' are taken for read_inbox",
           ((LOOKUP, 'EMAIL_TABLE.get(action.replace("-", "_").replace(" ", "_"), '
                     '(None, "hard_gate"))'),),
           {UNKNOWN: "other spacing"}, subtle=True),
    Mutant("suffix-match", "bulk_read_inbox runs as read_inbox",
           ((BODY, '''    for name, (_klass, policy) in EMAIL_TABLE.items():
        if action.endswith(name):
            return policy
    return "hard_gate"'''),),
           {UNKNOWN: "added or cut"}, subtle=True),
    Mutant("substring-match", "any name containing a known one runs as that one",
           ((BODY, '''    for name, (_klass, policy) in EMAIL_TABLE.items():
        if name in action:
            return policy
    return "hard_gate"'''),),
           {UNKNOWN: "added or cut"}, subtle=True),
    Mutant("hard-gate-for-everything", "fails closed by gating every action, known ones too",
           ((BODY, '    return "hard_gate"'),),
           {KNOWN: "disagrees with EMAIL_TABLE"}),
    Mutant("returns-the-pair", "the caller gets (class, policy) where it wants a policy",
           ((BODY, '    return EMAIL_TABLE.get(action, (None, "hard_gate"))'),),
           {KNOWN: "disagrees with EMAIL_TABLE", UNKNOWN: "not a policy name"}),
]
