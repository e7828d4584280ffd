"""The ChatOpenAI path, for real, against a stub server on 127.0.0.1 (no OpenAI, no key)."""

import subprocess
import sys

import pytest
from langchain_core.messages import HumanMessage

from hitl_kit.llm import get_chat_model
from hitl_kit.world import World

from .openai_stub import OpenAIStub


@pytest.fixture
def stub(monkeypatch):
    with OpenAIStub(tool_calls=[{"name": "delete_customer", "args": {"customer_id": 3}}]) as s:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
        monkeypatch.setenv("OPENAI_BASE_URL", s.base_url)
        monkeypatch.delenv("OPENAI_API_BASE", raising=False)
        monkeypatch.setenv("HITL_KIT_OPENAI_MODEL", "gpt-stub-1")
        yield s


def test_key_set_means_chatopenai_with_the_configured_model(stub):
    from langchain_openai import ChatOpenAI

    model = get_chat_model()
    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "gpt-stub-1"


def test_tool_calls_come_back_through_the_real_client(stub):
    model = get_chat_model(max_retries=0, timeout=10).bind_tools(World().tools())
    reply = model.invoke([HumanMessage("Delete the test customer record")])
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("delete_customer", {"customer_id": 3})]

    request = stub.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test-not-real"
    assert request["body"]["model"] == "gpt-stub-1"
    assert request["body"]["messages"][-1] == {"role": "user",
                                                "content": "Delete the test customer record"}
    sent = {t["function"]["name"]: t["function"] for t in request["body"]["tools"]}
    assert sent["delete_customer"]["parameters"]["properties"]["customer_id"]["type"] == "integer"
    assert "find_customers" in sent


def test_model_defaults_to_the_documented_one(stub, monkeypatch):
    monkeypatch.delenv("HITL_KIT_OPENAI_MODEL")
    assert get_chat_model().model_name == "gpt-4o-mini"


def test_offline_mode_never_imports_langchain_openai():
    code = ("import sys, os; os.environ.pop('OPENAI_API_KEY', None);"
            "from hitl_kit.llm import get_chat_model; get_chat_model();"
            "print('langchain_openai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
