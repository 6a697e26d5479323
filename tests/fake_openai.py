"""A scripted OpenAI-compatible chat-completions server on loopback, for testing LLM paths end to end.

The code under test talks to it through the real client (langchain-openai's ChatOpenAI over HTTP), so request
building, tool calling, usage accounting and error handling are all exercised; only the model is scripted.
Each POST to /v1/chat/completions gets the next scripted reply, and every request body is kept for asserts::

    with FakeOpenAI([tool({"task": "digits-cnn", ...}), text("not json")]) as server:
        settings = Settings(llm="openai-compatible:fake", base_url=server.base_url)
        ...
        assert "search_space" in server.requests[1]["messages"][-1]["content"]
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    kind: str  # "tool" | "text" | "raw" | "error"
    body: Any
    status: int = 200
    prompt_tokens: int = 100
    completion_tokens: int = 50


def tool(arguments: dict[str, Any] | str, **usage: int) -> Reply:
    """A call of the tool the request offered, with these arguments (a string is sent as it is)."""
    return Reply("tool", arguments, **usage)


def text(content: str, **usage: int) -> Reply:
    """A plain assistant message."""
    return Reply("text", content, **usage)


def raw(body: dict[str, Any]) -> Reply:
    """This JSON body as it is, with status 200: for servers whose replies are malformed."""
    return Reply("raw", body)


def error(status: int, message: str) -> Reply:
    """An HTTP error in OpenAI's error format, e.g. 400 for a server that does not support tools."""
    return Reply("error", message, status=status)


class FakeOpenAI:
    def __init__(self, replies: list[Reply]):
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            number = len(self.requests)
            if not self.replies:
                return 404, _error(f"fake server: no scripted reply left for request {number}")
            reply = self.replies.pop(0)
        if reply.kind == "error":
            return reply.status, _error(reply.body)
        if reply.kind == "raw":
            return 200, reply.body
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        if reply.kind == "tool":
            arguments = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            message["tool_calls"] = [
                {
                    "id": f"call_{number}",
                    "type": "function",
                    "function": {"name": _offered_tool(body), "arguments": arguments},
                }
            ]
            finish = "tool_calls"
        else:
            message["content"] = reply.body
        return 200, {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path.rstrip("/").endswith("/chat/completions"):
                    status, payload = fake._next(body, headers)
                else:
                    status, payload = 404, _error(f"fake server: no route {self.path}")
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: a test's output is its assertions."""

        return Handler


def _offered_tool(body: dict[str, Any]) -> str:
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return choice["function"]["name"]
    tools = body.get("tools") or [{"function": {"name": "answer"}}]
    return tools[0]["function"]["name"]


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
