"""The structured call to a chat model: a validated pydantic object out of any provider `llm.connect` sets up.

`ask` is what the planner, the coder and the analyst use: it asks for an answer in a pydantic schema through
LangChain's structured output (a forced tool call), falls back to JSON in plain text when the server cannot
call tools, and sends every invalid answer back with its validation errors for a bounded number of repairs.
Failed requests are told apart by langchain-core's provider-neutral errors (ModelConnectionError, ...), so
the same one-line messages come from every provider.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelConnectionError,
    ModelInvalidRequestError,
    ModelTimeoutError,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

import templates
from agent.plan.llm import TIMEOUT_S, ChatLLM, LLMAnswerError, LLMCallError, _one_line, errors_of
from agent.schemas import TokenUsage

MAX_ERRORS_SHOWN = 20

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def render_messages(template: str, **context: Any) -> list[BaseMessage]:
    """A prompt template's `system` and `user` blocks as the two messages that open a conversation."""
    tpl = templates.environment().get_template(template)
    ctx = tpl.new_context(context)
    system = "".join(tpl.blocks["system"](ctx)).strip()
    user = "".join(tpl.blocks["user"](ctx)).strip()
    return [SystemMessage(content=system), HumanMessage(content=user)]


def schema_json(schema: type[BaseModel]) -> str:
    """The JSON schema a prompt shows the model (in text mode it is all the model has to go by)."""
    return json.dumps(schema.model_json_schema(), indent=1)


@dataclass(frozen=True)
class Answer(Generic[T]):
    value: T
    usage: TokenUsage
    attempts: int
    mode: Literal["tools", "text"]


def _payload(message: AIMessage) -> Any:
    """The answer's arguments: the tool call's, or the first JSON object in the text."""
    if message.tool_calls:
        return message.tool_calls[0]["args"]
    if message.invalid_tool_calls:
        args = message.invalid_tool_calls[0].get("args") or ""
        raise ValueError(f"the tool call's arguments are not valid JSON: {args[:200]!r}")
    text = message.content if isinstance(message.content, str) else json.dumps(message.content)
    start = text.find("{")
    if start < 0:
        raise ValueError("the answer holds no JSON object; reply with one JSON object only")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer's JSON does not parse: {exc.msg} at character {exc.pos}") from None
    return value


def _as_text(message: AIMessage) -> str:
    """An answer as plain assistant text, so a repair conversation is valid on any server."""
    if message.tool_calls:
        return json.dumps(message.tool_calls[0]["args"])
    if message.invalid_tool_calls:
        return str(message.invalid_tool_calls[0].get("args") or "")
    return message.content if isinstance(message.content, str) else json.dumps(message.content)


def _describe(exc: Exception) -> str:
    """What went wrong with a request, in words that point at the fix (address, key, model name)."""
    if isinstance(exc, ModelTimeoutError):
        return f"no answer within {TIMEOUT_S:g} s"
    if isinstance(exc, ModelConnectionError):
        return f"cannot connect ({_one_line(exc)}); is the server running at that address?"
    status = _status(exc)
    if status is not None:
        return f"HTTP {status}: {_one_line(_server_message(exc))}"
    if isinstance(exc, LookupError | TypeError | ValueError | AttributeError):
        # what a client raises on a 200 reply that is not a chat answer (no choices, wrong shapes)
        return f"the reply is not a chat completion ({type(exc).__name__}: {_one_line(exc)})"
    return _one_line(exc)


def _status(exc: Exception) -> int | None:
    """The HTTP status of a refused request: on the SDK's error (openai, anthropic, groq, ...) or its response."""
    for holder in (exc, getattr(exc, "response", None)):
        status = getattr(holder, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _refuses_tools(exc: Exception) -> bool:
    """A 400 for a request with tools: the server cannot call tools (vLLM without auto tool choice, some Ollama
    models), so JSON in plain text may still work; a context overflow would not be helped by that."""
    if isinstance(exc, ContextOverflowError):
        return False
    return isinstance(exc, ModelInvalidRequestError) or _status(exc) == 400


def _server_message(exc: Exception) -> str:
    """The server's own words: OpenAI's error body is {"message"}, Anthropic's {"error": {"message"}}."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner.get("message"), str):
            return inner["message"]
    return str(exc)


def ask(
    llm: ChatLLM,
    messages: Sequence[BaseMessage],
    schema: type[M],
    *,
    finish: Callable[[M], T] | None = None,
    repairs: int = 2,
    max_tokens: int | None = None,
) -> Answer[T]:
    """An answer in `schema`, checked further by `finish` (which raises ValueError to reject it).

    The prompt in `messages` should show the schema (see `schema_json`). A rejected answer goes back with its
    errors, at most `repairs` times and while fewer than `max_tokens` tokens have been used; then
    LLMAnswerError. Server and network failures raise LLMCallError; nothing else escapes.
    """
    history = list(messages)
    usage = TokenUsage()
    mode: Literal["tools", "text"] = "tools"
    attempts = 0
    while True:
        try:
            raw = _invoke(llm, history, schema, mode)
        except Exception as exc:  # whatever a provider's client raises is a failed call, never a crash
            if mode == "tools" and _refuses_tools(exc):
                mode = "text"
                history.append(_json_only(schema))
                continue
            raise LLMCallError(f"{llm.spec} at {llm.where}: {_describe(exc)}") from None
        attempts += 1
        usage = usage + llm.usage(raw)
        try:
            parsed = schema.model_validate(_payload(raw))
            value = finish(parsed) if finish is not None else parsed
            return Answer(value=value, usage=usage, attempts=attempts, mode=mode)  # type: ignore[arg-type]
        except ValueError as exc:
            errors = errors_of(exc)[:MAX_ERRORS_SHOWN]
        spent = usage.input_tokens + usage.output_tokens
        if attempts > repairs or (max_tokens is not None and spent >= max_tokens):
            why = (
                f"{attempts} answers" if attempts > repairs else f"the token budget ({spent} of {max_tokens})"
            )
            raise LLMAnswerError(
                f"{llm.spec} gave no valid {schema.__name__} in {why}: {'; '.join(errors)}", errors, usage
            )
        repair = templates.environment().get_template("prompts/repair.md.j2").render(errors=errors)
        history += [AIMessage(content=_as_text(raw)), HumanMessage(content=repair.strip())]


def _invoke(llm: ChatLLM, history: list[BaseMessage], schema: type[BaseModel], mode: str) -> AIMessage:
    if mode == "tools":
        structured = llm.chat.with_structured_output(schema, method="function_calling", include_raw=True)
        return structured.invoke(history)["raw"]
    return llm.chat.invoke(history)  # type: ignore[return-value]


def _json_only(schema: type[BaseModel]) -> HumanMessage:
    text = templates.environment().get_template("prompts/json_only.md.j2").render(name=schema.__name__)
    return HumanMessage(content=text.strip())
