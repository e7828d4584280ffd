"""The chat model: a deterministic offline one by default, ChatOpenAI when a key is set.

``get_chat_model()`` is the only thing the rest of the kit calls. Both models speak LangChain's
chat-model interface with tool calling: ``model.bind_tools(tools).invoke(messages)`` returns an
``AIMessage`` whose ``tool_calls`` hold the tool name and arguments. The agent never parses text.

``OfflineChatModel`` stands in for an LLM so that every notebook runs without a network. It is a
toy planner, not a language model, and its conventions are simple enough to predict:

* a task is split into steps at ``;`` and at ``then``; each step becomes at most one tool call,
  and the calls of one turn are proposed together (parallel tool calls);
* the tool whose name (its verb above all) and description share the most words with the step
  is chosen;
* arguments come from the step: numbers (``customer 3``, ``amount 40``), quoted text
  (``"Thanks!"``), a quoted text or word named by the argument (``subject "Hi"``,
  ``version 2.4``, ``billing service``),
  e-mail addresses, dates, and enum values mentioned by name;
* an id it cannot find in the step is looked up first with a ``find_``/``search_`` tool when one
  is bound: ``delete the test customer record`` -> ``find_customers("test")``, then
  ``delete_customer(3)``;
* once every step has a tool result it answers in plain text;
* it can be steered by what it reads, as a real model can (prompt injection): text in a tool
  result that addresses the assistant (``Assistant: ...``, ``AI assistant, ...``) is taken as
  more steps of the task. Notebook 08 shows the gate stopping what such an email asks for.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
MODEL_ENV_VAR = "HITL_KIT_OPENAI_MODEL"
TIMEOUT_ENV_VAR = "HITL_KIT_OPENAI_TIMEOUT"  # seconds per request
RETRIES_ENV_VAR = "HITL_KIT_OPENAI_RETRIES"

STOP_WORDS = frozenset(
    "a an the to of for from in on at by with and or as is it its this that these those my our "
    "your their me us please can could would you i we all any some one be do does so into then "
    "which whose who what saying say says about".split()
)
WORD = re.compile(r'"([^"]*)"|([\w.@:+-]+)')
STEP_BREAK = re.compile(r";|\bthen\b", re.IGNORECASE)
DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ][\d:]+)?$")


def online() -> bool:
    """True when OPENAI_API_KEY is set, so ``get_chat_model`` returns ChatOpenAI."""
    return bool(os.environ.get("OPENAI_API_KEY"))


def get_chat_model(**openai_kwargs: Any) -> BaseChatModel:
    """ChatOpenAI when OPENAI_API_KEY is set (model from HITL_KIT_OPENAI_MODEL, default
    gpt-4o-mini; OPENAI_BASE_URL is honoured by the client), else the offline model.

    The client never waits forever: each request times out after ``HITL_KIT_OPENAI_TIMEOUT``
    seconds (default 60) and is retried at most ``HITL_KIT_OPENAI_RETRIES`` times (default 2);
    LangChain's own defaults are no timeout and the client's retries. A tool call whose
    arguments are JSON but not an object comes back among ``invalid_tool_calls`` with the
    other malformed ones, instead of failing the whole reply.
    """
    if not online():
        return OfflineChatModel()
    openai_kwargs.setdefault("model", os.environ.get(MODEL_ENV_VAR, DEFAULT_OPENAI_MODEL))
    openai_kwargs.setdefault("temperature", 0)
    openai_kwargs.setdefault("timeout", _number_from_env(TIMEOUT_ENV_VAR, 60.0))
    openai_kwargs.setdefault("max_retries", int(_number_from_env(RETRIES_ENV_VAR, 2)))
    return _checked_openai_class()(**openai_kwargs)


def _number_from_env(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name}={text!r} must be a non-negative number")
    return value


@functools.cache
def _checked_openai_class():
    """ChatOpenAI that files arguments which are JSON but not an object (``"[3]"``) under
    ``invalid_tool_calls``: LangChain would otherwise fail building the message, and the
    whole turn with it. Built on first use: langchain_openai is slow to import."""
    from langchain_core.messages.tool import invalid_tool_call
    from langchain_openai import ChatOpenAI

    class CheckedChatOpenAI(ChatOpenAI):
        def _create_chat_result(self, response, generation_info=None):
            response = response if isinstance(response, dict) else response.model_dump()
            set_aside: dict[int, list[dict]] = {}
            for index, choice in enumerate(response.get("choices") or []):
                message = choice.get("message") or {}
                calls = message.get("tool_calls") or []
                bad = [c for c in calls if _not_an_object(c)]
                if bad:
                    message["tool_calls"] = [c for c in calls if c not in bad] or None
                    set_aside[index] = bad
            result = super()._create_chat_result(response, generation_info)
            for index, bad in set_aside.items():
                reply = result.generations[index].message
                reply.invalid_tool_calls.extend(
                    invalid_tool_call(name=c["function"].get("name"),
                                      args=c["function"].get("arguments"), id=c.get("id"),
                                      error="the arguments are JSON but not an object")
                    for c in bad)
            return result

    return CheckedChatOpenAI


def _not_an_object(raw_call: dict) -> bool:
    text = (raw_call.get("function") or {}).get("arguments")
    if not text:
        return False
    try:
        return not isinstance(json.loads(text), dict)
    except ValueError:
        return False  # not JSON at all: LangChain files it as invalid by itself


ADDRESSED = re.compile(r"(?:^|[\n.!?]\s{0,3})(?:an?\s{1,3})?(?:ai\s{1,3})?assistant\s{0,3}"
                       r"[:,]\s{0,3}([^\n]{1,300})", re.IGNORECASE)


def _addressed_to_me(content: Any) -> list[str]:
    """Instructions a tool result addresses to the assistant (the offline model obeys them,
    which is the point of the prompt-injection demonstration). JSON results are read field by
    field, as a model reads the text, not the quoting."""
    text = content if isinstance(content, str) else str(content)
    try:
        texts = list(_strings(json.loads(text)))
    except (ValueError, RecursionError):
        texts = [text]
    return [m.group(1).strip() for t in texts for m in ADDRESSED.finditer(t[:20_000])]


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _stem(word: str) -> str:
    word = word.lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@functools.lru_cache(maxsize=1024)  # tool names and descriptions are scored on every turn
def _content_words(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in re.findall(r"[a-zA-Z]+", text)) - STOP_WORDS


class _Step:
    """One step of the task: its words, quoted texts and bare tokens."""

    def __init__(self, text: str):
        self.text = text.strip()
        self.tokens: list[tuple[str, bool]] = []  # (text, was_quoted)
        for quoted, bare in WORD.findall(self.text):
            self.tokens.append((quoted, True) if bare == "" else (bare.rstrip(".,:"), False))
        self.words = _content_words(" ".join(t for t, q in self.tokens if not q))


# (name, description) -> (schema, spec): tools are rebuilt often, their schemas are shared. The
# schema is kept and compared by identity, so a tool redefined with other arguments is not
# mistaken for the old one.
_SPECS: dict[tuple[str, str], tuple[Any, dict]] = {}


def _tool_spec(tool: Any) -> dict:
    if isinstance(tool, dict):
        return tool.get("function", tool)
    key, schema = (tool.name, tool.description), getattr(tool, "args_schema", None)
    cached = _SPECS.get(key)
    if cached is None or cached[0] is not schema or schema is None:
        spec = convert_to_openai_tool(tool)
        cached = _SPECS[key] = (schema, spec.get("function", spec))
    return cached[1]


def _words_of(spec: dict) -> frozenset[str]:
    return _content_words(spec["name"].replace("_", " ") + " " + spec.get("description", ""))


def _score(step: _Step, spec: dict) -> int:
    """Words shared with the tool: its verb counts most, then its other name words."""
    verb, *rest = spec["name"].split("_")
    score = 4 * (_stem(verb) in step.words)
    score += 2 * len(step.words & _content_words(" ".join(rest)))
    return score + len(step.words & _content_words(spec.get("description", "")))


def _fill_args(
    step: _Step, spec: dict, known: dict[str, Any], ignore: frozenset[str] = frozenset()
) -> tuple[dict, list[str]]:
    """Arguments for ``spec`` taken from the step (and ``known`` ids); also the missing ones.

    ``ignore`` holds words that must not end up in a free-text query."""
    params = spec.get("parameters", {}).get("properties", {})
    required = spec.get("parameters", {}).get("required", [])
    tokens = step.tokens
    used: set[int] = set()
    args: dict[str, Any] = {}

    def name_words(param: str) -> set[str]:
        return {_stem(w) for w in param.split("_")} - {"id"}

    def take(i: int) -> str:
        used.add(i)
        return tokens[i][0]

    for param, schema in params.items():
        kind = schema.get("type")
        pwords = name_words(param)
        enum = schema.get("enum")
        if enum:
            hits = [v for v in enum if _stem(str(v)) in step.words]
            if hits:
                args[param] = hits[0]
            continue
        if kind in ("integer", "number"):
            for i, (tok, quoted) in enumerate(tokens):
                number = tok.replace(".", "", 1) if kind == "number" else tok
                if not quoted and number.isdigit() and i > 0 and \
                        _stem(tokens[i - 1][0]) in pwords:
                    args[param] = int(take(i)) if kind == "integer" else float(take(i))
                    break
            else:
                if param in known:
                    args[param] = known[param]
            continue
        if kind != "string":
            continue
        for i, (tok, quoted) in enumerate(tokens):
            if i in used:
                continue
            after_name = i > 0 and not tokens[i - 1][1] and _stem(tokens[i - 1][0]) in pwords
            before_name = (
                i + 1 < len(tokens) and not tokens[i + 1][1] and _stem(tokens[i + 1][0]) in pwords
            )
            looks_like_value = quoted or any(c.isdigit() for c in tok)
            plain_word = not quoted and _stem(tok) not in STOP_WORDS | _all_param_words(params)
            if (after_name and looks_like_value) or (before_name and plain_word):
                args[param] = take(i)
                break
            if "@" in tok and pwords & {"email", "sender", "recipient"}:
                args[param] = take(i)
                break
            if DATE_LIKE.match(tok) and pwords & {"at", "date", "when", "start"}:
                args[param] = take(i)
                break

    # Quoted texts left over go, in order, to string parameters still empty.
    leftovers = [i for i, (_, quoted) in enumerate(tokens) if quoted and i not in used]
    for param, schema in params.items():
        free_text = schema.get("type") == "string" and "enum" not in schema
        if free_text and param not in args and leftovers:
            args[param] = take(leftovers.pop(0))
    # A free-text query is what is left of the step once the tool's own words are gone.
    if "query" in params and "query" not in args:
        vocabulary = ignore | _words_of(spec)
        rest = [t for i, (t, q) in enumerate(tokens) if i not in used and not q
                and _stem(t) not in vocabulary and _stem(t) not in STOP_WORDS and not t.isdigit()]
        if rest:
            args["query"] = " ".join(rest)
    missing = [p for p in required if p not in args]
    return args, missing


def _all_param_words(params: dict) -> set[str]:
    return {_stem(w) for p in params for w in p.split("_")}


def _ids_from_results(results: list[Any]) -> dict[str, Any]:
    """``customer_id``-style values found in earlier tool results (a single match only)."""
    known: dict[str, Any] = {}
    for name, content in results:
        try:
            data = json.loads(content)
        except (TypeError, ValueError):
            continue
        rows = data if isinstance(data, list) else [data]
        entity = name.split("_", 1)[-1].rstrip("s")  # find_customers -> customer
        if len(rows) == 1 and isinstance(rows[0], dict) and "id" in rows[0]:
            known[f"{entity}_id"] = rows[0]["id"]
    return known


class OfflineChatModel(BaseChatModel):
    """A deterministic, offline chat model with tool calling (see the module docstring)."""

    @property
    def _llm_type(self) -> str:
        return "hitl-kit-offline"

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        return self.bind(tools=[_tool_spec(t) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs):
        message = self._respond(messages, kwargs.get("tools") or [])
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _respond(self, messages: list[BaseMessage], specs: list[dict]) -> AIMessage:
        task = next((m.content for m in messages if isinstance(m, HumanMessage)), "")
        if not isinstance(task, str) or not task.strip():
            return AIMessage(content="I need a task in plain text.")
        proposed = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
        answered = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
        names = {c["id"]: c["name"] for c in proposed}
        results = [(names.get(i, ""), m.content) for i, m in answered.items()]
        known = _ids_from_results(results)

        injected = [line for _, content in results for line in _addressed_to_me(content)]
        calls, unplanned = [], []
        steps = [s for text in (task, *injected) for s in STEP_BREAK.split(text) if s.strip()]
        for text in steps:
            call = self._plan_step(_Step(text), specs, known)
            if call is None:
                unplanned.append(text.strip())
                continue
            if any(p["name"] == call["name"] and p["args"] == call["args"] for p in proposed):
                continue  # already proposed in an earlier turn
            call["id"] = f"call_{len(proposed) + len(calls) + 1}_{call['name']}"
            calls.append(call)
        if calls:
            return AIMessage(content="", tool_calls=calls)
        return AIMessage(content=self._summary(proposed, answered, unplanned))

    def _plan_step(self, step: _Step, specs: list[dict], known: dict) -> dict | None:
        scored = sorted(((_score(step, s), -i, s) for i, s in enumerate(specs)),
                        key=lambda t: t[:2], reverse=True)
        if not scored or scored[0][0] == 0:
            return None
        spec = scored[0][2]
        args, missing = _fill_args(step, spec, known)
        if not missing:
            return {"name": spec["name"], "args": args, "type": "tool_call"}
        lookup = self._lookup_for(missing, specs)
        if lookup is None:
            return None
        args, missing = _fill_args(step, lookup, {}, ignore=frozenset(_words_of(spec)))
        return None if missing else {"name": lookup["name"], "args": args, "type": "tool_call"}

    @staticmethod
    def _lookup_for(missing: list[str], specs: list[dict]) -> dict | None:
        for param in missing:
            if not param.endswith("_id"):
                continue
            entity = param[: -len("_id")]
            for spec in specs:
                verb, _, noun = spec["name"].partition("_")
                if verb in ("find", "search") and _stem(noun) == entity:
                    return spec
        return None

    @staticmethod
    def _summary(proposed: list[dict], answered: dict, unplanned: list[str]) -> str:
        lines = []
        for call in proposed:
            reply = answered.get(call["id"])
            if reply is not None:
                lines.append(f"{call['name']}({json.dumps(call['args'])}): {reply.content}")
        if unplanned:
            lines.append("No tool of mine fits: " + "; ".join(unplanned))
        return "\n".join(lines) if lines else "Nothing to do."


# -- what any model proposes, made storable -------------------------------------------------------

MAX_ARG_DEPTH = 32
INT_RANGE = (-(2**63), 2**64 - 1)  # what the checkpointer (msgpack) can store


def _unstorable(value, depth: int = 0) -> str | None:
    """Why these arguments cannot be kept in a checkpoint, or None."""
    if depth > MAX_ARG_DEPTH:
        return f"the arguments are nested deeper than {MAX_ARG_DEPTH} levels"
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return None
    if isinstance(value, int):
        low, high = INT_RANGE
        return None if low <= value <= high else f"the number {value} is out of range"
    items = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list | tuple):
        return next((why for why in (_unstorable(v, depth + 1) for v in items) if why), None)
    return f"a value of type {type(value).__name__} is not JSON"


def storable_reply(reply: AIMessage, history: list) -> AIMessage:
    """A model's reply as the kit can keep and key it: a fresh id for any call whose id is
    missing or was used before in this thread (some servers number calls ``call_0`` every turn:
    the ledger, the journal and the audit trail key on it), and a call whose arguments could not
    be stored in a checkpoint turned into an invalid call (the model and the approver are told
    why), not a crash."""
    seen = {c["id"] for m in history if isinstance(m, AIMessage)
            for c in (*m.tool_calls, *m.invalid_tool_calls)}
    storable, unstorable = [], []
    for call in reply.tool_calls:
        why = _unstorable(call["args"])
        if why is None:
            storable.append(call)
        else:
            unstorable.append({"name": call["name"], "id": call.get("id"), "error": why,
                               "args": json.dumps(call["args"], default=str)[:2000],
                               "type": "invalid_tool_call"})

    def unique(call: dict) -> dict:
        call_id, n = call.get("id") or "call", 1
        while call_id in seen:
            call_id, n = f"{call.get('id') or 'call'}~{n}", n + 1
        seen.add(call_id)
        return {**call, "id": call_id}

    calls = [unique(c) for c in storable]
    invalid = [unique(c) for c in (*reply.invalid_tool_calls, *unstorable)]
    if calls == reply.tool_calls and invalid == reply.invalid_tool_calls:
        return reply
    kwargs = {k: v for k, v in reply.additional_kwargs.items() if k != "tool_calls"}
    return reply.model_copy(update={"tool_calls": calls, "invalid_tool_calls": invalid,
                                    "additional_kwargs": kwargs})
