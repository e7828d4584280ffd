"""Drill 1's mutants: wrong rows in EMAIL_TABLE, and lookups that fail open or crash."""

from tests.mutants import Mutant

CLASSIFIED = "every action is classified with a known class and policy"
OWN = "contacts, mail rules and calendar events run without a human"
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
           (('"send_reply": ("irreversible_low", "soft_gate")',
             '"send_reply": ("irreversible_low", "hard_gate")'),),
           {FOLLOWS: "send_reply: irreversible_low calls for soft_gate"}),
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
           {UNKNOWN: "behind a namespace"}, subtle=True),
    Mutant("substring-match", "any name containing a known one runs as that one",
           ((BODY, '''    for name, (_klass, policy) in EMAIL_TABLE.items():
        if name in action:
            return policy
    return "hard_gate"'''),),
           {UNKNOWN: "behind a namespace"}, subtle=True),
    Mutant("hard-gate-for-everything", "fails closed by gating every action, known ones too",
           ((BODY, '    return "hard_gate"'),),
           {KNOWN: "disagrees with EMAIL_TABLE"}),
    Mutant("returns-the-pair", "the caller gets (class, policy) where it wants a policy",
           ((BODY, '    return EMAIL_TABLE.get(action, (None, "hard_gate"))'),),
           {KNOWN: "disagrees with EMAIL_TABLE", UNKNOWN: "not a policy name"}),
]

# -- part B: impact rules ----------------------------------------------------------------------
RULES = "your rules gate replies outside the company and mail rules that delete"
RAISE = "policy_for_call: a rule raises a call to its class exactly when it holds"
ONLY_RAISE = "policy_for_call: rules only raise, only their own action, and the highest wins"
FAIL_CLOSED = "policy_for_call: a rule that cannot be evaluated sends the call to a hard gate"
EXPLAINS = "policy_for_call: raised_by names exactly the rules that raised the call"
UNKNOWN_CALL = "policy_for_call fails closed for every action not in the table"

REPLY_RULE = '"target.thread.sender_domain", "!=", "example.com", "irreversible_high"'
RAISE_TO = "klass = max(klass, raise_to, key=rank)"
GUARD = "if rule_action != action or rank(raise_to) <= rank(base):"
FAIL_CLOSED_LINE = "holds, raise_to = True, CLASS_ORDER[-1]  # nobody can tell: fail closed"
NUMBER_TEST = '''    if op in (">", ">=", "<", "<=") and (isinstance(found, bool)
                                        or not isinstance(found, int | float)):
        raise CannotTell(f"{field} is {found!r}, not a number")'''
WALK = '''        if not isinstance(found, dict) or key not in found:
            raise CannotTell(f"{field} is missing")
        found = found[key]'''
COUNTED = '''        if holds:
            raised_by.append(rule)
            klass = max(klass, raise_to, key=rank)'''
UNKNOWN_FIRST = '''    if action not in EMAIL_TABLE:
        return "hard_gate", []
'''
RETURNED = "return (POLICY_BY_CLASS[klass] if raised_by else own_policy), raised_by"

MUTANTS += [
    # -- EMAIL_RULES ------------------------------------------------------------------------------
    Mutant("reply-rule-inverted", "colleagues' replies wait, strangers' go out",
           ((REPLY_RULE, REPLY_RULE.replace('"!="', '"=="')),),
           {RULES: "not a hard gate"}),
    Mutant("outside-reply-behind-a-soft-gate",
           "a reply to a stranger goes out when nobody answers in time",
           ((REPLY_RULE, REPLY_RULE.replace("irreversible_high", "irreversible_low")),),
           {RULES: "a reply to someone@vendor.example gets 'soft_gate', not a hard gate"},
           subtle=True),
    Mutant("whole-address-compared", "the sender's address is never equal to a domain: every "
                                     "reply waits",
           ((REPLY_RULE, REPLY_RULE.replace("sender_domain", "sender")),),
           {RULES: "a reply to someone@example.com is raised: over-gating"}, subtle=True),
    Mutant("mail-rules-gated-unless-archive", "labelling a newsletter waits for a hard gate",
           (('"args.action", "==", "delete"', '"args.action", "!=", "archive"'),),
           {RULES: "a mail rule that labels"}, subtle=True),
    Mutant("delete-rule-capitalised", "'Delete' never matches what the model sends",
           (('"==", "delete"', '"==", "Delete"'),),
           {RULES: "a mail rule that deletes"}),
    # -- policy_for_call: when a rule holds -------------------------------------------------------
    Mutant("reads-the-global-rules", "the function works for EMAIL_RULES only, not the rules "
                                     "it is given",
           (("    for rule in rules:", "    for rule in EMAIL_RULES:"),),
           dict.fromkeys((RAISE, ONLY_RAISE, FAIL_CLOSED, EXPLAINS, UNKNOWN_CALL),
                         "never reads its rules argument"), subtle=True),
    Mutant("greater-or-equal-for-greater", "a list of exactly the threshold is raised",
           (('">": operator.gt', '">": operator.ge'),),
           {RAISE: "at its threshold, where it does not hold"}, subtle=True),
    Mutant("identity-for-equality", "`is` compares objects: 10.0 is not 10, a joined string "
                                    "is not a literal",
           (('"==": operator.eq', '"==": operator.is_'),),
           {RAISE: "a rule that holds does not raise the call"}, subtle=True),
    Mutant("every-field-read-from-args", "a rule over the target reads the model's arguments",
           (('found = args if where == "args" else target', "found = args"),),
           {RAISE: "not read from target", FAIL_CLOSED: "a rule over the target is read from "
                                                         "args"}, subtle=True),
    Mutant("raises-straight-to-the-top", "every raised call needs a hard gate: over-gating",
           ((RAISE_TO, "klass = CLASS_ORDER[-1]"),),
           {RAISE: "another class than its own"}),
    Mutant("classes-compared-as-text", "'partially_reversible' > 'irreversible_high' as strings",
           ((RAISE_TO, "klass = max(klass, raise_to)"),),
           {RAISE: "a rule that holds does not raise the call",
            ONLY_RAISE: "does not get the higher class",
            FAIL_CLOSED: "is not raised to the top class"}, subtle=True),
    # -- policy_for_call: only raise --------------------------------------------------------------
    Mutant("last-rule-wins", "a later, lower rule overrides a higher one",
           ((RAISE_TO, "klass = raise_to"),),
           {ONLY_RAISE: "does not get the higher class"}, subtle=True),
    Mutant("rules-decide-without-the-action", "the class is the highest rule's, so a rule "
                                              "written to 'relax' an action lowers it",
           ((GUARD, "if rule_action != action:"),
            ("klass, raised_by = base, []", "klass, raised_by = CLASS_ORDER[0], []")),
           {ONLY_RAISE: "lowered a call below its action's class",
            EXPLAINS: "names a rule that did not raise the call"}),
    Mutant("keeping-rules-count", "a rule that names the action's own class is not ignored",
           ((GUARD, "if rule_action != action or rank(raise_to) < rank(base):"),),
           {ONLY_RAISE: "would keep or lower the class changed the call",
            EXPLAINS: "names a rule that did not raise the call"}, subtle=True),
    Mutant("ignores-whose-rule-it-is", "a rule for deleting raises every action with the field",
           ((GUARD, "if rank(raise_to) <= rank(base):"),),
           {ONLY_RAISE: "a rule for another action changed this call"}, subtle=True),
    # -- policy_for_call: fail closed -------------------------------------------------------------
    Mutant("missing-field-does-not-hold", "no recipient count, so no gate (fail open)",
           ((FAIL_CLOSED_LINE, "holds = False  # nobody can tell: assume it does not hold"),),
           {FAIL_CLOSED: "field is missing lets the call through (fail open)",
            EXPLAINS: "empty although a rule raised the call"}, subtle=True),
    Mutant("fails-closed-to-the-rules-class", "a call nobody can size gets only the rule's class",
           ((FAIL_CLOSED_LINE, "holds = True  # nobody can tell: the rule holds"),),
           {FAIL_CLOSED: "only to the rule's class"}, subtle=True),
    Mutant("bool-counts-as-a-number", "True > 0: a flag passes as a count",
           ((NUMBER_TEST, NUMBER_TEST.replace(
               "(isinstance(found, bool)\n" + " " * 40 + "or not isinstance(found, int | float))",
               "not isinstance(found, int | float)")),),
           {FAIL_CLOSED: "not a number is compared as if it were one"}, subtle=True),
    Mutant("converts-text-to-numbers", "'5' <= 10 after float(): text from the model is trusted",
           ((NUMBER_TEST, '''    if op in (">", ">=", "<", "<="):
        try:
            found = float(found)
        except (TypeError, ValueError):
            raise CannotTell(f"{field} is {found!r}, not a number") from None'''),),
           {FAIL_CLOSED: "not a number is compared as if it were one"}, subtle=True),
    Mutant("catches-only-key-errors", "a target that is None, or a step that is not a dict, "
                                      "crashes the agent",
           ((WALK, '''        try:
            found = found[key]
        except KeyError:
            raise CannotTell(f"{field} is missing") from None'''),),
           {FAIL_CLOSED: "crashes on a rule it cannot evaluate"}, subtle=True),
    Mutant("crashes-on-a-missing-field", "a KeyError stops the agent instead of asking a human",
           ((WALK, "        found = found[key]"),),
           {FAIL_CLOSED: "crashes on a rule it cannot evaluate",
            EXPLAINS: "crashes while explaining a call"}),
    # -- policy_for_call: raised_by ---------------------------------------------------------------
    Mutant("no-explanation", "the card cannot say why this call needs a human",
           ((RETURNED, "return (POLICY_BY_CLASS[klass] if raised_by else own_policy), []"),),
           {EXPLAINS: "empty although a rule raised the call"}),
    Mutant("lists-every-rule-of-the-action", "the card blames rules that did not hold",
           ((COUNTED, '''        raised_by.append(rule)
        if holds:
            klass = max(klass, raise_to, key=rank)'''),),
           {EXPLAINS: "names a rule that did not raise the call"}, subtle=True),
    Mutant("names-only-the-deciding-rule", "the approver sees one reason of two",
           ((COUNTED, '''        if holds and rank(raise_to) > rank(klass):
            raised_by = [rule]
            klass = raise_to'''),),
           {EXPLAINS: "leaves out a rule that raised the call"}, subtle=True),
    # -- policy_for_call: unknown actions ---------------------------------------------------------
    Mutant("unknown-action-gets-the-rules-class", "a rule gives an unclassified tool a soft gate",
           ((UNKNOWN_FIRST + "    base, own_policy = EMAIL_TABLE[action]",
             '    base, own_policy = EMAIL_TABLE.get(action, ("fully_reversible", "hard_gate"))'),),
           {UNKNOWN_CALL: "a class of its own"}, subtle=True),
    Mutant("lower-cases-the-call", "'Send_Reply' runs under send_reply's policy",
           (("if action not in EMAIL_TABLE:", "if action.lower() not in EMAIL_TABLE:"),
            ("base, own_policy = EMAIL_TABLE[action]",
             "base, own_policy = EMAIL_TABLE[action.lower()]")),
           {UNKNOWN_CALL: "in other capitals"}, subtle=True),
    Mutant("unknown-action-crashes", "an unclassified tool stops the agent with a KeyError",
           ((UNKNOWN_FIRST, ""),),
           {UNKNOWN_CALL: "crashes on an action that is not in the table"}),
]

# -- what an answer silently depends on (issue 22): a batch per part ------------------------------
SIGNATURE = '''def policy_for_call(action: str, args: dict, target: dict | None,
                    rules: list) -> tuple[str, list]:'''
PATH_WALK = '''    for key in path.split("."):'''

MUTANTS += [
    # -- part A: names behind a namespace ----------------------------------------------------------
    Mutant("namespace-cut-off", "'email.read_inbox' (another server's tool) runs as read_inbox",
           ((LOOKUP, 'EMAIL_TABLE.get(action.split(".")[-1], (None, "hard_gate"))'),),
           {UNKNOWN: "behind a namespace"}, subtle=True),
    Mutant("mcp-prefix-removed", "an MCP server's prefix is taken off before the lookup",
           ((LOOKUP, 'EMAIL_TABLE.get(action.removeprefix("mcp__email__"), '
                     '(None, "hard_gate"))'),),
           {UNKNOWN: "behind a namespace"}, subtle=True),
    Mutant("path-tail-looked-up", "'mail/send_reply' is looked up as send_reply",
           ((LOOKUP, 'EMAIL_TABLE.get(action.rpartition("/")[2], (None, "hard_gate"))'),),
           {UNKNOWN: "behind a namespace"}, subtle=True),
    Mutant("leading-separators-stripped", "'.read_inbox' is tidied into read_inbox",
           ((LOOKUP, 'EMAIL_TABLE.get(action.lstrip("./:"), (None, "hard_gate"))'),),
           {UNKNOWN: "behind a namespace"}, subtle=True),
    # -- part A: state kept between lookups --------------------------------------------------------
    Mutant("cache-under-a-folded-key", "a cache filled by read_inbox answers for READ_INBOX",
           ((BODY, '''    key = action.casefold()  # cache: asked again and again
    if key not in _SEEN:
        _SEEN[key] = EMAIL_TABLE.get(action, (None, "hard_gate"))[1]
    return _SEEN[key]'''),
            ("def policy_for(action: str) -> str:",
             "_SEEN = {}\n\n\ndef policy_for(action: str) -> str:")),
           {UNKNOWN: "in other capitals"}, subtle=True),
    # -- part A: the rows nobody looked at ---------------------------------------------------------
    Mutant("contact-behind-a-soft-gate", "every new contact waits for a human: over-gating",
           (('"add_contact": ("partially_reversible", "auto_with_logging")',
             '"add_contact": ("irreversible_low", "soft_gate")'),),
           {OWN: "add_contact: soft_gate"}, subtle=True),
    Mutant("every-mail-rule-hard-gated", "a rule that labels a newsletter waits for a hard gate",
           (('"set_rule": ("partially_reversible", "auto_with_logging")',
             '"set_rule": ("irreversible_high", "hard_gate")'),),
           {OWN: "set_rule: hard_gate"}, subtle=True),
    Mutant("calendar-event-as-a-send", "an event on the user's own calendar treated like mail sent",
           (('"create_calendar_event": ("partially_reversible", "auto_with_logging")',
             '"create_calendar_event": ("irreversible_low", "soft_gate")'),),
           {OWN: "create_calendar_event: soft_gate"}, subtle=True),
    # -- part B: names -----------------------------------------------------------------------------
    Mutant("rule-action-by-suffix", "a rule for 'email.send_reply' raises send_reply",
           ((GUARD, "if not rule_action.endswith(action) or rank(raise_to) <= rank(base):"),),
           {ONLY_RAISE: "a rule for another action changed this call"}, subtle=True),
    Mutant("call-namespace-cut-off", "'email.send_reply' is judged as send_reply",
           ((UNKNOWN_FIRST, '    action = action.rpartition(".")[2]  # "email.send_reply"\n'
                            + UNKNOWN_FIRST),),
           {UNKNOWN_CALL: "behind a namespace"}, subtle=True),
    # -- part B: fields and values -----------------------------------------------------------------
    Mutant("two-keys-at-most", "target.thread.sender.people is read two keys deep",
           ((PATH_WALK, '''    for key in path.split(".")[:2]:  # args.x or target.x.y'''),),
           {RAISE: "nested target field"}, subtle=True),
    Mutant("falsy-means-missing", "0 and '' are taken for a missing field",
           ((WALK, WALK + '''
    if found in (None, "", 0):  # nothing there
        raise CannotTell(f"{field} is empty")'''),),
           {RAISE: "although it does not hold"}, subtle=True),
    Mutant("none-means-missing", "a field that is there with None is taken for a missing one",
           ((WALK, WALK + '''
    if found is None:
        raise CannotTell(f"{field} is None")'''),),
           {RAISE: "although it does not hold"}, subtle=True),
    # -- part B: state kept between calls ----------------------------------------------------------
    Mutant("unknown-action-added-to-the-table", "every unknown call adds a row to EMAIL_TABLE",
           ((UNKNOWN_FIRST, '''    if action not in EMAIL_TABLE:
        EMAIL_TABLE.setdefault(action, ("irreversible_high", "hard_gate"))  # remember it
        return "hard_gate", []
'''),),
           {UNKNOWN_CALL: "changes EMAIL_TABLE"}, subtle=True),
    Mutant("memo-ignores-the-target", "a cache keyed by the action, args and rules, not target",
           ((UNKNOWN_FIRST, '''    key = (action, repr(args), repr(rules))
    if key in _MEMO:  # the agent asks about the same call again and again
        return _MEMO[key]
    _MEMO[key] = answer = _decide(action, args, target, rules)
    return answer


def _decide(action, args, target, rules):
''' + UNKNOWN_FIRST),
            (SIGNATURE, "_MEMO = {}\n\n\n" + SIGNATURE)),
           {RAISE: "not read from target"}, subtle=True),
]
MUTANTS += [
    Mutant("raised-by-in-a-default-list", "the list of reasons outlives the call it was made for",
           ((SIGNATURE, '''def policy_for_call(action: str, args: dict, target: dict | None,
                    rules: list, raised_by: list = []) -> tuple[str, list]:'''),
            ("    klass, raised_by = base, []", "    klass = base")),
           {EXPLAINS: "names a rule more than once"}, subtle=True),
]
