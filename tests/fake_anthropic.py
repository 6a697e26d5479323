"""A scripted Anthropic Messages API server on loopback: `--llm anthropic:<model>` tested end to end.

The code under test talks to it through the real client (langchain-anthropic's ChatAnthropic over the
anthropic SDK); see tests/fake_server.py. Each POST to /v1/messages gets the next scripted reply::

    with FakeAnthropic([tool({"task": "digits-cnn", ...})]) as server:
        settings = Settings(llm="anthropic:claude-sonnet-4-5", api_key="sk-ant-test", base_url=server.base_url)
"""

from __future__ import annotations

from typing import Any

from fake_server import FakeServer, Reply, error, raw, text, tool

__all__ = ["FakeAnthropic", "Reply", "error", "raw", "text", "tool"]


class FakeAnthropic(FakeServer):
    route = "/v1/messages"

    def render(self, reply: Reply, request: dict[str, Any], number: int) -> dict[str, Any]:
        if reply.kind == "tool":
            if not isinstance(reply.body, dict):
                raise TypeError("Anthropic's API sends a tool call's input as an object, never as text")
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{number}",
                    "name": _offered_tool(request),
                    "input": reply.body,
                }
            ]
            stop = "tool_use"
        else:
            content, stop = [{"type": "text", "text": reply.body}], "end_turn"
        return {
            "id": f"msg_{number}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", "fake"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
        }

    def error_body(self, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}


def _offered_tool(body: dict[str, Any]) -> str:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        return choice["name"]
    tools = body.get("tools") or [{"name": "answer"}]
    return tools[0]["name"]
