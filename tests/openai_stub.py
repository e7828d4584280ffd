"""A tiny OpenAI-compatible server on 127.0.0.1 for testing the real ChatOpenAI path offline.

It answers POST /v1/chat/completions from a script: one reply per request, the last one
repeated. A reply is a dict with one of

* ``tool_calls``: a list of ``{"name", "args"}`` (args encoded as JSON) or ``{"name",
  "arguments"}`` (raw text, so malformed JSON can be sent), each with an optional ``id``;
* ``text``: a plain answer;
* ``status``: an HTTP error status (e.g. 500) with an OpenAI-style error body;
* ``hang``: never answer (the connection stays open until the server stops).

Like OpenAI, it refuses (HTTP 400) a conversation in which an assistant's tool call has no tool
message answering it: a client that drops a malformed call is caught here.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OpenAIStub:
    """Answers the scripted replies and records every request it received."""

    def __init__(self, tool_calls: list[dict] | None = None, text: str = "",
                 script: list[dict] | None = None):
        self.script = script or [{"tool_calls": tool_calls} if tool_calls else {"text": text}]
        self.requests: list[dict] = []
        self._stop = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                reply = stub.script[min(len(stub.requests), len(stub.script)) - 1]
                unanswered = stub.unanswered(body["messages"])
                if unanswered:
                    self._send(400, stub.error(
                        "An assistant message with 'tool_calls' must be followed by tool "
                        f"messages responding to each 'tool_call_id'. Missing: {unanswered}"))
                elif reply.get("hang"):
                    stub._stop.wait(60)
                elif reply.get("status"):
                    self._send(reply["status"], stub.error("The server had an error"))
                else:
                    self._send(200, stub.completion(body["model"], reply))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def unanswered(messages: list[dict]) -> list[str]:
        """Tool call ids an assistant message asked for that no tool message answered."""
        asked, answered = [], set()
        for message in messages:
            if message.get("role") == "assistant":
                asked += [c["id"] for c in message.get("tool_calls") or []]
            elif message.get("role") == "tool":
                answered.add(message.get("tool_call_id"))
        return [i for i in asked if i not in answered]

    @staticmethod
    def error(message: str) -> dict:
        return {"error": {"message": message, "type": "invalid_request_error", "code": None}}

    @staticmethod
    def completion(model: str, reply: dict) -> dict:
        message = {"role": "assistant", "content": reply.get("text") or None}
        calls = reply.get("tool_calls") or []
        if calls:
            message["tool_calls"] = [
                {"id": c.get("id", f"call_stub_{i}"), "type": "function",
                 "function": {"name": c["name"],
                              "arguments": c["arguments"] if "arguments" in c
                              else json.dumps(c["args"])}}
                for i, c in enumerate(calls)
            ]
        return {
            "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
