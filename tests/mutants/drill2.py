"""Drill 2's mutants: gates that fail open, pauses that leak, answers bent on the way."""

from tests.mutants import Mutant

NEEDS = "data-modifying tools need approval, reads don't, unknown tools do"
READS = "read-only tasks and tasks with no call finish without pausing"
PAUSES = ("a modifying task pauses before anything changes, with the action and its arguments "
          "in the payload")
ONCE = "an approval runs the call exactly once, even if sent twice"
EXACT = "only an exact 'approved' runs the call"
WHOLE = "the human's answer is kept whole (approver, reason)"
ONE_CALL = "one approval covers one call: the next task on the thread asks again"
THREADS = "threads are independent: approving one decides nothing on another"
SAVER = "the graph uses the checkpointer it is given (a SqliteSaver, after a restart)"
EVERY_PAUSE = (PAUSES, ONCE, EXACT, WHOLE, ONE_CALL, THREADS, SAVER)  # each starts with a pause

NOT_READ_ONLY = "return tool_name not in READ_ONLY"
GUARD = 'if call is None or not needs_approval(call["name"]):'
RETURN = '    return {"decision": decision}'
ASK = '''    decision = interrupt({
        "task": state["task"],
        "action": call["name"],
        "args": call["args"],
        "message": "This call changes customer data. Approve or reject?",
    })'''
COMPILE = '''builder.add_edge("review", "execute")
    builder.add_edge("execute", END)
    return builder.compile(checkpointer=checkpointer)'''
COMPILED = "return builder.compile(checkpointer=checkpointer)"
REVIEW_NODE = 'builder.add_node("review", review)'
WIRING = '''    builder.add_edge(START, "plan")
    builder.add_edge("plan", "review")
    builder.add_edge("review", "execute")
    builder.add_edge("execute", END)'''


def every_pause(fragment: str) -> dict:
    return dict.fromkeys(EVERY_PAUSE, fragment)


MUTANTS = [
    # -- needs_approval ----------------------------------------------------------------------------
    Mutant("lists-the-writes", "a tool added later runs ungated",
           ((NOT_READ_ONLY, 'return tool_name in {"update_customer", "delete_customer"}'),),
           {NEEDS: "run without a human"}),
    Mutant("matches-verbs", "merge_customers has neither 'update' nor 'delete' in its name",
           ((NOT_READ_ONLY, 'return any(verb in tool_name for verb in ("update", "delete"))'),),
           {NEEDS: "run without a human"}),
    Mutant("reads-by-prefix", "read_customer_and_delete passes as a read",
           ((NOT_READ_ONLY, 'return not tool_name.startswith(("find", "read"))'),),
           {NEEDS: "something added or cut"}, subtle=True),
    Mutant("lower-cases-the-name", "Read_Customer passes as a read",
           ((NOT_READ_ONLY, "return tool_name.lower() not in READ_ONLY"),),
           {NEEDS: "in other capitals"}, subtle=True),
    # -- review ------------------------------------------------------------------------------------
    Mutant("asks-for-everything", "reads wait for a human: over-gating",
           ((GUARD, "if call is None:"),),
           {READS: "paused, but it only reads"}),
    Mutant("no-call-crashes", "a turn with no tool call crashes review",
           ((GUARD, 'if not needs_approval(call["name"]):'),),
           {READS: "raised TypeError"}, subtle=True),
    Mutant("payload-without-arguments", "the approver cannot see which customer",
           (('        "args": call["args"],\n', ""),),
           {PAUSES: "its arguments"}),
    Mutant("interrupt-swallowed", "except Exception around interrupt() eats the pause",
           ((ASK, '    try:\n    ' + ASK.replace("\n", "\n    ") + '''
    except Exception:
        decision = {"decision": "rejected", "approver": "system", "reason": "no answer"}'''),),
           every_pause("caught its pause"), subtle=True),
    Mutant("ignores-the-human", "whatever the human says, the call runs",
           ((RETURN, '    return {"decision": {"decision": "approved", "approver": "agent"}}'),),
           {EXACT: "the answer was a rejection", WHOLE: "not kept as given",
            ONE_CALL: "a rejected second task on the same thread ran anyway",
            THREADS: "rejecting one thread ran something"}),
    Mutant("anything-but-rejected-approves", "'reject', a typo or {} approve the call",
           ((RETURN, '''    approved = decision.get("decision") != "rejected"
    return {"decision": {**decision, "decision": "approved" if approved else "rejected"}}'''),),
           {EXACT: "the answer was 'reject', a verb", WHOLE: "not kept as given"}, subtle=True),
    Mutant("rebuilds-the-answer", "the approver's reason never reaches the record",
           ((RETURN, '    return {"decision": {"decision": decision["decision"], '
                     '"approver": decision["approver"]}}'),),
           {WHOLE: "not kept as given"}, subtle=True),
    Mutant("skips-when-state-has-a-decision",
           "guarding the re-run with state['decision'] approves the thread's next task",
           ((GUARD, 'if state.get("decision"):  # decided already: don\'t ask twice\n'
                    '        return {}\n    ' + GUARD),),
           {ONE_CALL: "leaks to the next task", READS: "is not an auto-approval"}, subtle=True),
    Mutant("remembers-approvals-globally", "an approval on one thread approves the same call on "
           "every other", (("def review(state: State) -> dict:", '''APPROVED_CALLS = set()


def review(state: State) -> dict:'''),
                           (GUARD, GUARD.replace(":", "") + ''' or (
            call["name"], json.dumps(call["args"], sort_keys=True)) in APPROVED_CALLS:'''),
                           (RETURN, '''    if decision.get("decision") == "approved":
        APPROVED_CALLS.add((call["name"], json.dumps(call["args"], sort_keys=True)))
''' + RETURN)),
           {THREADS: "lets the same call run on another"}, subtle=True),
    Mutant("review-runs-the-call-too", "the call runs in review and again in execute",
           ((REVIEW_NODE, '''tools = {t.name: t for t in world.tools(CUSTOMER_TOOLS)}

    def review_and_run(state):
        out = review(state)
        if out["decision"].get("decision") == "approved":
            tools[state["call"]["name"]].invoke(state["call"]["args"])
        return out

    builder.add_node("review", review_and_run)'''),),
           {ONCE: "one approval ran delete_customer 2 times"}, subtle=True),
    Mutant("acts-then-asks", "execute runs first; review asks afterwards",
           ((REVIEW_NODE, REVIEW_NODE + '\n    builder.add_node("rubber_stamp", rubber_stamp)'),
            (WIRING, '''    builder.add_edge(START, "plan")
    builder.add_edge("plan", "rubber_stamp")
    builder.add_edge("rubber_stamp", "execute")
    builder.add_edge("execute", "review")
    builder.add_edge("review", END)''')),
           every_pause("changed the world before anyone approved it"), subtle=True),
    # -- build_gated_agent -------------------------------------------------------------------------
    Mutant("static-breakpoint", "interrupt_before stops every task and shows no payload",
           ((COMPILE, COMPILE.replace(COMPILED, 'return builder.compile(checkpointer=checkpointer, '
                                                'interrupt_before=["review"])')),),
           {READS: "paused, but it only reads", **every_pause("without calling interrupt()")}),
    Mutant("no-checkpointer", "compiled without the checkpointer: nothing can pause",
           ((COMPILE, COMPILE.replace(COMPILED, "return builder.compile()")),),
           {READS: "has no checkpointer", **every_pause("has no checkpointer")}),
    Mutant("own-memory-saver", "a MemorySaver of its own: paused runs die with the process",
           ((COMPILE, COMPILE.replace(COMPILED,
                                      "return builder.compile(checkpointer=MemorySaver())")),),
           {SAVER: "somewhere other than the checkpointer it was given"}, subtle=True),
]

# -- what an answer silently depends on (issue 22): a batch --------------------------------------
AUTO_RETURN = '        return {"decision": {"decision": "auto-approved", "approver": "auto"}}'
EVERY_RUN = (READS, PAUSES, ONCE, EXACT, WHOLE, ONE_CALL, THREADS, SAVER)  # each builds the graph

MUTANTS += [
    # -- names -------------------------------------------------------------------------------------
    Mutant("namespace-cut-off", "'crm.read_customer', another server's tool, passes as a read",
           ((NOT_READ_ONLY, 'return tool_name.split(".")[-1] not in READ_ONLY'),),
           {NEEDS: "behind a namespace"}, subtle=True),
    Mutant("function-prefix-removed", "'functions.read_customer' passes as a read",
           ((NOT_READ_ONLY, 'return tool_name.removeprefix("functions.") not in READ_ONLY'),),
           {NEEDS: "behind a namespace"}, subtle=True),
    # -- the decision recorded for what needs no human ---------------------------------------------
    Mutant("reads-recorded-as-approved", "the record claims a person approved every read",
           ((AUTO_RETURN, '        return {"decision": {"decision": "approved", "approver": '
                          '"auto"}}'),),
           {READS: "is not an auto-approval"}, subtle=True),
    Mutant("auto-decision-names-nobody", "the record cannot say who let the read through",
           ((AUTO_RETURN, '        return {"decision": {"decision": "auto-approved"}}'),),
           {READS: "is not an auto-approval"}, subtle=True),
    Mutant("reads-keep-the-last-decision", "a read after ana's approval is recorded as hers",
           ((AUTO_RETURN, '        return {"decision": state.get("decision") or '
                          '{"decision": "auto-approved", "approver": "auto"}}'),),
           {READS: "is not an auto-approval"}, subtle=True),
    # -- who and in which order --------------------------------------------------------------------
    Mutant("a-rejection-sticks-to-the-thread", "after one rejection, nothing more is asked there",
           ((GUARD, 'if state.get("decision", {}).get("decision") == "rejected":\n'
                    "        return {}  # this thread was turned down\n    " + GUARD),),
           {ONE_CALL: "does not ask"}, subtle=True),
    Mutant("normalises-the-decision-word", "'APPROVED' and 'approved ' run the call",
           ((RETURN, '    return {"decision": {**decision, "decision": '
                     'str(decision.get("decision", "")).strip().lower()}}'),),
           {EXACT: "the answer was 'APPROVED'"}, subtle=True),
    Mutant("updates-approved-whatever-the-answer", "updates only tell the human, then run",
           ((RETURN, '''    if call["name"] == "update_customer":  # low risk: just inform
        return {"decision": {**decision, "decision": "approved"}}
''' + RETURN),),
           {EXACT: "the answer was a rejection", WHOLE: "not kept as given"}, subtle=True),
    Mutant("edits-dropped", "only the decision, approver and reason are kept",
           ((RETURN, '    return {"decision": {key: decision[key] for key in ("decision", '
                     '"approver", "reason") if key in decision}}'),),
           {WHOLE: "not kept as given"}, subtle=True),
    # -- what reaches the given code, and the names the check looks for ----------------------------
    Mutant("decision-as-a-string", "the state's decision is the word, not the answer",
           ((RETURN, '    return {"decision": decision.get("decision")}'),),
           {ONCE: "the given `execute` failed on what your review returned",
            WHOLE: "the given `execute` failed", ONE_CALL: "the given `execute` failed",
            THREADS: "the given `execute` failed", SAVER: "the given `execute` failed"},
           subtle=True),
    Mutant("review-renamed", "the node is called review_node, and the check asks for review",
           (("def review(state: State) -> dict:", "def review_node(state: State) -> dict:"),
            (REVIEW_NODE, 'builder.add_node("review", review_node)')),
           dict.fromkeys(EVERY_RUN, "your notebook defines `review_node`, the check looks for "
                                    "`review`")),
]
