"""A scripted OpenAI-compatible chat-completions server on loopback, for testing LLM paths end to end.

The code under test talks to it through the real client (langchain-openai's ChatOpenAI over HTTP); see
tests/fake_server.py. Each POST to /v1/chat/completions gets the next scripted reply, streamed in chunks when
the request asks for a stream (as the client does for a self-hosted server)::

    with FakeOpenAI([tool({"task": "digits-cnn", ...}), text("not json")]) as server:
        settings = Settings(llm="openai-compatible:fake", base_url=server.base_url)
        ...
        assert "search_space" in server.requests[1]["messages"][-1]["content"]
"""

from __future__ import annotations

import json
from typing import Any

from fake_server import FakeServer, Reply, error, raw, text, tool

__all__ = ["FakeOpenAI", "Reply", "error", "raw", "text", "tool"]


class FakeOpenAI(FakeServer):
    route = "/chat/completions"
    prefix = "/v1"

    def render(self, reply: Reply, request: dict[str, Any], number: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = reply.finish or "stop"
        if reply.kind == "tool":
            arguments = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            message["tool_calls"] = [
                {
                    "id": f"call_{number}",
                    "type": "function",
                    "function": {"name": _offered_tool(request), "arguments": arguments},
                }
            ]
            finish = reply.finish or "tool_calls"
        else:
            message["content"] = reply.body
        return {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": 0,
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(reply),
        }

    def events(self, reply: Reply, request: dict[str, Any], number: int) -> list[dict[str, Any]]:
        """The reply as chat.completion.chunk events: the role, the content or the tool call's arguments in
        pieces of 20 characters, the finish reason, and the usage when the request asks for it."""

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {**head, "choices": [choice]}

        head = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "created": 0, "model": "fake"}
        out = [chunk({"role": "assistant", "content": ""})]
        if reply.kind == "tool":
            arguments = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            call = {"index": 0, "id": f"call_{number}", "type": "function"}
            out.append(
                chunk(
                    {"tool_calls": [{**call, "function": {"name": _offered_tool(request), "arguments": ""}}]}
                )
            )
            out += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 20]}}]})
                for i in range(0, len(arguments), 20)
            ]
            out.append(chunk({}, reply.finish or "tool_calls"))
        else:
            out += [chunk({"content": reply.body[i : i + 20]}) for i in range(0, len(reply.body), 20)]
            out.append(chunk({}, reply.finish or "stop"))
        if reply.stream_usage and (request.get("stream_options") or {}).get("include_usage"):
            out.append({**head, "choices": [], "usage": _usage(reply)})
        return out

    def error_body(self, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _offered_tool(body: dict[str, Any]) -> str:
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return choice["function"]["name"]
    tools = body.get("tools") or [{"function": {"name": "answer"}}]
    return tools[0]["function"]["name"]
