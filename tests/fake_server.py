"""A scripted chat-model server on loopback: what every provider's fake shares (tests/fake_openai.py,
tests/fake_anthropic.py).

The code under test talks to a fake through the provider's real client over HTTP, so request building, tool
calling, usage accounting and error handling are all exercised; only the model is scripted. Each POST to the
provider's chat route gets the next scripted reply, rendered in that provider's wire format (as server-sent
events when the request asks for a stream and the provider's fake can stream), and every request body and its
headers are kept for asserts. `gets` serves fixed JSON on GET routes, as a server reports facts about itself.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class Reply:
    kind: str  # "tool" | "text" | "raw" | "error"
    body: Any
    status: int = 200
    prompt_tokens: int = 100
    completion_tokens: int = 50
    delay_s: float = 0.0  # how long the server thinks before it answers
    finish: str = ""  # the finish reason, when not the usual one (e.g. "length": cut at max_tokens)
    stream_usage: bool = True  # whether a streamed answer ends with its usage (llama-cpp-python's does not)


def tool(arguments: dict[str, Any] | str, **how: Any) -> Reply:
    """A call of the tool the request offered, with these arguments (a string is sent as it is, where the
    provider's format allows one)."""
    return Reply("tool", arguments, **how)


def text(content: str, **how: Any) -> Reply:
    """A plain assistant message."""
    return Reply("text", content, **how)


def raw(body: dict[str, Any]) -> Reply:
    """This JSON body as it is, with status 200: for servers whose replies are malformed."""
    return Reply("raw", body)


def error(status: int, message: str) -> Reply:
    """An HTTP error in the provider's error format, e.g. 400 for a server that does not support tools."""
    return Reply("error", message, status=status)


class FakeServer(ABC):
    """Serves scripted replies on 127.0.0.1; a provider's fake says where its route is and renders replies."""

    route = "/chat"  # the path suffix the provider's client posts to
    prefix = ""  # what the client's base URL adds to the host

    def __init__(self, replies: list[Reply], gets: dict[str, dict[str, Any]] | None = None):
        self.replies = list(replies)
        self.gets = dict(gets or {})
        self.asked: list[str] = []  # the GET routes asked for, in order
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @abstractmethod
    def render(self, reply: Reply, request: dict[str, Any], number: int) -> dict[str, Any]:
        """A "tool" or "text" reply as the provider's 200 response body."""

    @abstractmethod
    def error_body(self, message: str) -> dict[str, Any]:
        """An error as the provider's error body."""

    def events(self, reply: Reply, request: dict[str, Any], number: int) -> list[dict[str, Any]] | None:
        """A reply as the provider's stream of events, or None where the fake does not stream."""
        return None

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            number = len(self.requests)
            if not self.replies:
                return 404, self.error_body(f"fake server: no scripted reply left for request {number}")
            reply = self.replies.pop(0)
        time.sleep(reply.delay_s)
        if reply.kind == "error":
            return reply.status, self.error_body(reply.body)
        if reply.kind == "raw":
            return 200, reply.body
        if body.get("stream") and (events := self.events(reply, body, number)) is not None:
            return 200, events
        return 200, self.render(reply, body, number)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                path = self.path.split("?")[0].rstrip("/")
                fake.asked.append(path)
                if path in fake.gets:
                    self._send(200, fake.gets[path])
                else:
                    self._send(404, fake.error_body(f"fake server: no route {self.path}"))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path.split("?")[0].rstrip("/").endswith(fake.route):
                    status, payload = fake._next(body, headers)
                else:
                    status, payload = 404, fake.error_body(f"fake server: no route {self.path}")
                if isinstance(payload, list):
                    self._stream(payload)
                else:
                    self._send(status, payload)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, events: list[dict[str, Any]]) -> None:
                """Server-sent events, one JSON object each, then OpenAI's [DONE]."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: a test's output is its assertions."""

        return Handler
