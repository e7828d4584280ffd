import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from hitl_kit.llm import OfflineChatModel, get_chat_model


def first_calls(world, task):
    reply = OfflineChatModel().bind_tools(world.tools()).invoke([HumanMessage(task)])
    assert isinstance(reply, AIMessage)
    return [(c["name"], c["args"]) for c in reply.tool_calls]


def test_no_key_means_offline_model(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert isinstance(get_chat_model(), OfflineChatModel)


@pytest.mark.parametrize(("task", "expected"), [
    ("read the inbox", ("read_inbox", {})),
    ('search mail for "invoice"', ("search_mail", {"query": "invoice"})),
    ('send a reply to thread 3 saying "Monday works"',
     ("send_reply", {"thread_id": 3, "body": "Monday works"})),
    ('draft a reply to thread 1 saying "Paid"', ("draft_reply", {"thread_id": 1, "body": "Paid"})),
    ("unsubscribe from thread 2", ("unsubscribe", {"thread_id": 2})),
    ("archive thread 4", ("archive_thread", {"thread_id": 4})),
    ("set a rule to archive mail from news@deals.example",
     ("set_rule", {"sender": "news@deals.example", "action": "archive"})),
    ('add contact "Grace Hopper" grace@example.com',
     ("add_contact", {"name": "Grace Hopper", "email": "grace@example.com"})),
    ('create a calendar event "Lunch" at 2026-12-01T12:00',
     ("create_calendar_event", {"title": "Lunch", "starts_at": "2026-12-01T12:00"})),
    ('set the plan of customer 2 to "enterprise"',
     ("update_customer", {"customer_id": 2, "field": "plan", "value": "enterprise"})),
    ('send a mass email to the customers list with subject "News" and body "We moved"',
     ("send_mass_email", {"list_name": "customers", "subject": "News", "body": "We moved"})),
    ("deploy the billing service version 2.4 to prod",
     ("deploy_to_prod", {"service": "billing", "version": "2.4"})),
])
def test_tasks_become_tool_calls_with_arguments(world, task, expected):
    assert first_calls(world, task) == [expected]


def test_missing_id_is_looked_up_first_then_used(world):
    tools = {t.name: t for t in world.tools()}
    model = OfflineChatModel().bind_tools(list(tools.values()))
    messages = [HumanMessage("Delete the test customer record")]
    seen = []
    for _ in range(4):
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            seen.append((call["name"], call["args"]))
            result = tools[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(json.dumps(result), tool_call_id=call["id"]))
    assert seen == [("find_customers", {"query": "test"}), ("delete_customer", {"customer_id": 3})]
    assert "delete_customer" in messages[-1].content and not messages[-1].tool_calls
    assert world.find_customers("test") == []


def test_the_id_comes_from_the_data_not_from_a_fixed_payload(world):
    world.delete_customer(3)
    world._db.execute("INSERT INTO customers VALUES (17,'Test Account','t@example.com','trial','')")
    tools = {t.name: t for t in world.tools()}
    model = OfflineChatModel().bind_tools(list(tools.values()))
    messages = [HumanMessage("Delete the test customer record")]
    lookup = model.invoke(messages)
    messages += [lookup, ToolMessage(json.dumps(world.find_customers("test")),
                                     tool_call_id=lookup.tool_calls[0]["id"])]
    assert model.invoke(messages).tool_calls[0]["args"] == {"customer_id": 17}


def test_steps_become_parallel_tool_calls(world):
    assert first_calls(world, "archive thread 1; delete thread 2") == [
        ("archive_thread", {"thread_id": 1}), ("delete_thread", {"thread_id": 2})]


def test_tool_call_ids_are_unique_per_turn(world):
    reply = OfflineChatModel().bind_tools(world.tools()).invoke(
        [HumanMessage("archive thread 1; archive thread 4")])
    ids = [c["id"] for c in reply.tool_calls]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_no_fitting_tool_gives_text_and_no_calls(world):
    reply = OfflineChatModel().bind_tools(world.tools()).invoke([HumanMessage("bake a cake")])
    assert reply.tool_calls == [] and "bake a cake" in reply.content


def test_without_tools_it_only_talks():
    reply = OfflineChatModel().invoke([HumanMessage("delete customer 3")])
    assert reply.tool_calls == []


def test_same_input_same_output(world):
    model = OfflineChatModel().bind_tools(world.tools())
    task = [HumanMessage('send a reply to thread 3 saying "ok"')]
    assert model.invoke(task).tool_calls == model.invoke(task).tool_calls


def test_a_rejection_ends_the_run_with_its_reason(world):
    model = OfflineChatModel().bind_tools(world.tools())
    messages = [HumanMessage("delete customer 4")]
    call = model.invoke(messages)
    messages += [call, ToolMessage("Rejected by ana: customer renews in March",
                                   tool_call_id=call.tool_calls[0]["id"], status="error")]
    final = model.invoke(messages)
    assert final.tool_calls == [] and "customer renews in March" in final.content
