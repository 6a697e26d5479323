"""The structured call to a chat model: a validated pydantic object out of any provider `llm.connect` sets up.

`ask` is what the planner and the coder use. It asks for an answer in a pydantic schema the strongest way the
server takes (`ChatLLM.modes`: a JSON-schema response format, llama-cpp-python's json_object with a schema, a
forced tool call, JSON in plain text), moving down the list when a server refuses one with HTTP 400 or 422 and
remembering what the server took. An invalid answer goes back with each error and the fragment of the answer it
is about, a bounded number of times; the conversation holds the first prompt and the last answer only, so a
repair costs no more context than the first answer did. Failed requests are told apart by langchain-core's
provider-neutral errors, so the same one-line messages come from every provider.

A self-hosted server's answer is streamed: `waiting` hears once a second how long the call has waited and how
many tokens have come, and an answer past `llm_timeout_s` is stopped (its server stops with it). Where a stream
carries no usage (llama-cpp-python), the tokens are estimated: the prompt from its characters
(`serving.CHARS_PER_TOKEN`), the answer from the chunks streamed, one token each.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel

import templates
from agent.plan import failures, serving
from agent.plan.llm import COMPATIBLE, ChatLLM, LLMAnswerError, LLMCallError, errors_of
from agent.schemas import TokenUsage

MAX_ERRORS_SHOWN = 20
FRAGMENT_CHARS = 300
REPAIR_TEMPERATURE = 0.5
MIN_ROOM = 256  # the least room a repair keeps for its answer
ECHO_CHARS = 2000  # about 600 tokens: what an unparseable answer takes of the repair's context
TICK_S = 1.0
_ANNOTATIONS = ("title", "description")
_PATH = re.compile(r"^([A-Za-z_]\w*(?:\[[^\]]*\]|\.\w+)*):")
# the mode each server took last, so the next call asks it that way first: (spec, where) -> mode
_TAKEN: dict[tuple[str, str], str] = {}

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Waiting = Callable[[float, int], None]  # seconds waited, tokens received so far


def render_messages(template: str, **context: Any) -> list[BaseMessage]:
    """A prompt template's `system` and `user` blocks as the two messages that open a conversation."""
    tpl = templates.environment().get_template(template)
    ctx = tpl.new_context(context)
    system = "".join(tpl.blocks["system"](ctx)).strip()
    user = "".join(tpl.blocks["user"](ctx)).strip()
    return [SystemMessage(content=system), HumanMessage(content=user)]


def lean_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema without its titles and descriptions, as the server gets it (tool parameters, response
    format) and a text-mode prompt shows it: the prompt says what the fields mean, and a small model's context
    and a grammar's size both pay for every character."""

    def lean(node: Any, names: bool = False) -> Any:
        if isinstance(node, dict):
            return {k: lean(v, k == "properties") for k, v in node.items() if names or k not in _ANNOTATIONS}
        if isinstance(node, list):
            return [lean(v) for v in node]
        return node

    return lean(schema.model_json_schema())


def schema_json(schema: type[BaseModel]) -> str:
    return json.dumps(lean_schema(schema), separators=(",", ":"))


def compact(value: Any) -> str:
    """JSON on one line, as a prompt shows a draft or an answer's fragment: indentation costs tokens."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


@dataclass(frozen=True)
class Answer(Generic[T]):
    value: T
    usage: TokenUsage
    attempts: int
    mode: str


class Improvable(ValueError):
    """What `finish` raises for an answer it accepts but would rather see improved: its errors go back while a
    repair is left, and once none is, the answer stands as `value`."""

    def __init__(self, value: Any, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.value, self.errors = value, errors


def _payload(message: AIMessage) -> Any:
    """The answer's arguments: the tool call's, or the first JSON object in the text."""
    if message.tool_calls:
        return message.tool_calls[0]["args"]
    if message.invalid_tool_calls:
        args = message.invalid_tool_calls[0].get("args") or ""
        raise ValueError(f"the tool call's arguments are not valid JSON: {args[:200]!r}")
    text = _as_text(message)
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


def _echo(message: AIMessage, payload: Any) -> str:
    """The answer as the repair conversation repeats it: its JSON alone when it parsed (prose around it, and
    indentation, would only take context), else its text, cut at ECHO_CHARS."""
    if payload is not None:
        return json.dumps(payload, ensure_ascii=False)
    text = _as_text(message)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def fragment(payload: Any, error: str) -> str | None:
    """The part of an answer an error is about, found by the path it starts with ('search_space[momentum]',
    'arms[wider].fixed[width]', 'search_space.0.name'), as one line of JSON; None when it names no part."""
    found = _PATH.match(error)
    if found is None or not isinstance(payload, dict):
        return None
    node: Any = payload
    shown: Any = None
    for step in re.findall(r"[^.\[\]]+", found.group(1)):
        if isinstance(node, dict) and step in node:
            inner = node[step]
        elif isinstance(node, list):
            named = (x for x in node if isinstance(x, dict) and step in (x.get("name"), x.get("target")))
            inner = node[int(step)] if step.isdigit() and int(step) < len(node) else next(named, None)
            if inner is None:
                break
        else:
            break
        if not isinstance(inner, dict | list):  # a value: show it in the element that holds it
            shown = {step: inner} if node is payload else node
            break
        node = shown = inner
    if shown is None:
        return None
    text = compact(shown)
    return text if len(text) <= FRAGMENT_CHARS else text[: FRAGMENT_CHARS - 1] + "…"


def ask(
    llm: ChatLLM,
    messages: Sequence[BaseMessage],
    schema: type[M],
    *,
    finish: Callable[[M], T] | None = None,
    repairs: int = 2,
    max_tokens: int | None = None,
    waiting: Waiting | None = None,
) -> Answer[T]:
    """An answer in `schema`, checked further by `finish` (which raises ValueError to reject it).

    A rejected answer goes back with its errors, at most `repairs` times and while fewer than `max_tokens`
    tokens have been used; then LLMAnswerError. A prompt that cannot fit the server's context with its answer,
    and server and network failures, raise LLMCallError; nothing else escapes.
    """
    modes = list(llm.modes)
    taken = _TAKEN.get((llm.spec, llm.where))
    mode = taken if taken in modes else modes[0]
    tail: list[BaseMessage] = []
    usage = TokenUsage()
    attempts = 0
    room = llm.answer_tokens
    fallback: Improvable | None = None
    while True:
        sent = [*messages, *([_json_only(schema)] if mode == "text" else []), *tail]
        _check_room(llm, sent, schema, mode, room)
        try:
            raw, chunks = _invoke(llm, sent, schema, mode, waiting, room, repair=bool(tail))
        except Exception as exc:  # whatever a provider's client raises is a failed call, never a crash
            later = modes[modes.index(mode) + 1 :]
            if later and failures.refuses_mode(exc):
                mode = later[0]
                continue
            raise LLMCallError(f"{llm.spec} at {llm.where}: {failures.describe(exc, llm)}") from None
        _TAKEN[(llm.spec, llm.where)] = mode
        attempts += 1
        spent_now = _usage(llm, raw, sent, chunks)
        usage = usage + spent_now
        payload: Any = None
        try:
            payload = _payload(raw)
            parsed = schema.model_validate(payload)
            value = finish(parsed) if finish is not None else parsed
            return Answer(value=value, usage=usage, attempts=attempts, mode=mode)  # type: ignore[arg-type]
        except Improvable as exc:
            fallback, errors = exc, exc.errors[:MAX_ERRORS_SHOWN]
        except ValueError as exc:
            errors = errors_of(exc)[:MAX_ERRORS_SHOWN]
        if (raw.response_metadata or {}).get("finish_reason") == "length":
            errors.insert(0, f"answer: cut off at {room} tokens (llm_answer_tokens); answer more briefly")
            room = llm.answer_tokens
        else:  # a repaired answer is about as long as the one it repairs: keep room for twice that
            room = min(llm.answer_tokens, max(MIN_ROOM, 2 * spent_now.output_tokens))
        spent = usage.input_tokens + usage.output_tokens
        if attempts > repairs or (max_tokens is not None and spent >= max_tokens):
            if fallback is not None:
                return Answer(value=fallback.value, usage=usage, attempts=attempts, mode=mode)
            why = (
                f"{attempts} answers" if attempts > repairs else f"the token budget ({spent} of {max_tokens})"
            )
            raise LLMAnswerError(
                f"{llm.spec} gave no valid {schema.__name__} in {why}: {'; '.join(errors)}", errors, usage
            )
        shown = [(e, fragment(payload, e)) for e in errors]
        repair = templates.environment().get_template("prompts/repair.md.j2").render(errors=shown)
        tail = [AIMessage(content=_echo(raw, payload)), HumanMessage(content=repair.strip())]


def _check_room(llm: ChatLLM, sent: list[BaseMessage], schema: type[BaseModel], mode: str, room: int) -> None:
    """Refuse, before sending, a prompt that cannot fit the context with `room` tokens for its answer, where the
    context is known (the llm_context_tokens setting, else what a self-hosted server reports)."""
    if llm.context_tokens is not None:
        context, source = llm.context_tokens, "set by llm_context_tokens"
    elif llm.self_hosted:
        reported = serving.context_window(llm.where, llm.model, ollama=llm.provider == "ollama")
        if reported is None:
            return
        context, source = reported[0], f"the server reports at {reported[1]}"
    else:
        return
    need = serving.prompt_tokens(sent, schema_json(schema) if mode == "tools" else "")
    if need + room > context:
        raise LLMCallError(
            f"{llm.spec} at {llm.where}: the prompt takes about {need} tokens and its answer up to "
            f"{room} (llm_answer_tokens), more than the {context}-token context {source}; not sent: "
            "give the server a larger context (llama.cpp --n_ctx, Ollama num_ctx) and set llm_context_tokens "
            "to it, or lower llm_answer_tokens"
        )


def _usage(llm: ChatLLM, raw: AIMessage, sent: list[BaseMessage], chunks: int) -> TokenUsage:
    if raw.usage_metadata or not chunks:
        return llm.usage(raw)
    return TokenUsage(input_tokens=serving.prompt_tokens(sent), output_tokens=chunks, calls=1)


def _bound(
    llm: ChatLLM, schema: type[BaseModel], mode: str, room: int, repair: bool = False
) -> Runnable[LanguageModelInput, Any]:
    """The chat model bound to ask for `schema` in `mode`. Response formats and a compatible server's
    max_tokens travel in the body as written (LangChain would turn a response format into its own parsing
    path, which does not stream, and max_tokens into max_completion_tokens, which llama-cpp-python ignores).
    A compatible server's model, asked at temperature 0, is asked a repair at REPAIR_TEMPERATURE: at 0 the
    1.5B model sent the same wrong edit three times whatever the errors said."""
    extra: dict[str, Any] = {"max_tokens": room} if llm.provider == COMPATIBLE else {}
    name, lean = schema.__name__, lean_schema(schema)
    if mode == "json_schema":
        extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": lean, "strict": False},
        }
    elif mode == "json_object":
        extra["response_format"] = {"type": "json_object", "schema": lean}
    chat: Runnable[LanguageModelInput, Any] = llm.chat
    if mode == "tools":
        tool = {
            "type": "function",
            "function": {"name": name, "description": _doc(schema), "parameters": lean},
        }
        chat = llm.chat.bind_tools([tool], tool_choice=name)
    given: dict[str, Any] = {"extra_body": extra} if extra else {}
    if repair and llm.provider == COMPATIBLE:
        given["temperature"] = REPAIR_TEMPERATURE
    return chat.bind(**given) if given else chat


def _invoke(
    llm: ChatLLM,
    sent: list[BaseMessage],
    schema: type[BaseModel],
    mode: str,
    waiting: Waiting | None,
    room: int,
    repair: bool = False,
) -> tuple[AIMessage, int]:
    """The answer of at most `room` tokens, and how many chunks it streamed in (0 when it was not streamed)."""
    bound = _bound(llm, schema, mode, room, repair)
    with _Clock(waiting) as clock:
        if not llm.self_hosted:
            return bound.invoke(sent), 0
        message: AIMessage | None = None
        stream = bound.stream(sent)
        try:
            for chunk in stream:
                message = chunk if message is None else message + chunk
                clock.tokens += bool(chunk.content or chunk.tool_call_chunks)  # not the role's or the end's
                if time.monotonic() - clock.started > llm.timeout_s:
                    raise failures.Overdue()
        finally:
            stream.close()  # a closed stream drops the connection, and the server stops generating
    if message is None:
        raise ValueError("the stream ended before any answer")
    return message, clock.tokens


class _Clock:
    """Tells `waiting` once a second how long the call has waited and how many tokens have come."""

    def __init__(self, waiting: Waiting | None):
        self.waiting = waiting
        self.tokens = 0
        self.started = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True) if waiting else None

    def __enter__(self) -> _Clock:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _tick(self) -> None:
        while not self._done.wait(TICK_S):
            self.waiting(time.monotonic() - self.started, self.tokens)  # type: ignore[misc]


def _doc(schema: type[BaseModel]) -> str:
    return " ".join((schema.__doc__ or schema.__name__).split())


def _json_only(schema: type[BaseModel]) -> HumanMessage:
    text = (
        templates.environment()
        .get_template("prompts/json_only.md.j2")
        .render(name=schema.__name__, schema=schema_json(schema))
    )
    return HumanMessage(content=text.strip())
