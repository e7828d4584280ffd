import pytest

from hitl_kit.policy import ACTION_TABLE, ActionPolicy
from hitl_kit.world import SEED_LIST_SIZE, World


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


def test_every_tool_carries_the_class_from_the_table(world):
    tools = world.tools()
    assert [(t.name, t.metadata["reversibility"]) for t in tools] == ACTION_TABLE
    assert ActionPolicy.from_tools(tools).classes == ActionPolicy(ACTION_TABLE).classes


def test_the_ten_email_actions_and_the_high_stakes_ones_exist(world):
    names = {t.name for t in world.tools()}
    assert {"read_inbox", "draft_reply", "send_reply", "unsubscribe", "delete_thread",
            "add_contact", "set_rule", "archive_thread", "search_mail",
            "create_calendar_event", "send_mass_email", "deploy_to_prod"} <= names


def test_customer_read_update_delete_change_the_store(world):
    assert world.find_customers("test")[0]["id"] == 3
    changed = world.update_customer(2, "plan", "enterprise")
    assert changed["before"]["plan"] == "pro" and world.read_customer(2)["plan"] == "enterprise"
    world.delete_customer(3)
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 4]
    with pytest.raises(LookupError, match="no customer with id 3"):
        world.read_customer(3)


def test_update_refuses_unknown_field_and_changes_nothing(world):
    before = world.rows("customers")
    with pytest.raises(ValueError, match="field must be one of"):
        world.update_customer(1, "id", "99")
    assert world.rows("customers") == before


def test_mail_actions_do_real_work(world):
    world.draft_reply(3, "Monday works")
    assert world.count("outbox") == 0  # a draft sends nothing
    world.send_reply(3, "Monday works")
    assert world.rows("outbox")[0]["recipient"] == "grace@example.com"
    world.archive_thread(1)
    assert 1 not in [t["id"] for t in world.read_inbox()]
    assert world.search_mail("invoice")[0]["id"] == 1  # archived mail is still searchable
    world.unsubscribe(2)
    assert world.rows("unsubscribed")[0]["sender"] == "news@deals.example"
    world.delete_thread(2)
    assert world.search_mail("deals") == []
    world.add_contact("Grace Hopper", "grace@example.com")
    world.set_rule("news@deals.example", "archive")
    world.create_calendar_event("Lunch", "2026-12-01T12:00")
    assert (world.count("contacts"), world.count("rules"), world.count("events")) == (1, 1, 1)


def test_high_stakes_actions(world):
    assert world.send_mass_email("customers", "News", "Hello")["sent"] == SEED_LIST_SIZE
    assert world.count("outbox") == SEED_LIST_SIZE
    first = world.deploy_to_prod("billing", "2.4")
    second = world.deploy_to_prod("billing", "2.5")
    assert first["replaced"] is None and second["replaced"] == "2.4"


def test_target_of_reads_without_side_effects(world):
    before = {t: world.rows(t) for t in world.tables()}
    assert world.target_of("delete_customer", {"customer_id": 3})["customer"]["name"] == \
        "Test Customer"
    assert world.target_of("send_reply", {"thread_id": 3})["thread"]["sender"] == \
        "grace@example.com"
    assert world.target_of("send_mass_email", {"list_name": "customers"})["recipients"] == \
        SEED_LIST_SIZE
    assert "no customer" in world.target_of("delete_customer", {"customer_id": 99})["error"]
    assert world.target_of("read_inbox", {}) is None
    assert {t: world.rows(t) for t in world.tables()} == before


def test_tools_invoke_through_langchain(world):
    tool = {t.name: t for t in world.tools(["delete_customer"])}["delete_customer"]
    tool.invoke({"customer_id": 4})
    assert [c["id"] for c in world.rows("customers")] == [1, 2, 3]


def test_unknown_table_and_tool_names_are_refused(world):
    with pytest.raises(ValueError, match="no table 'nope'"):
        world.rows("nope")
    with pytest.raises(ValueError, match="no such tools"):
        world.tools(["launch_rockets"])


def test_a_file_backed_world_keeps_its_state(tmp_path):
    path = str(tmp_path / "world.db")
    first = World(path)
    first.delete_customer(3)
    first.close()
    assert [c["id"] for c in World(path).rows("customers")] == [1, 2, 4]


def test_calls_count_each_tool_run_and_nothing_else(world):
    tools = {t.name: t for t in world.tools()}
    tools["read_customer"].invoke({"customer_id": 1})
    tools["delete_customer"].invoke({"customer_id": 4})
    world.read_customer(2)  # a direct method call is not a tool run
    world.target_of("delete_customer", {"customer_id": 1})
    assert world.calls == {"read_customer": 1, "delete_customer": 1}
