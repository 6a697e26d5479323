"""Chat-model providers, and a way to get a validated pydantic object out of any of them.

One setting picks the model (`--llm`, RESEARCH_LOOP_LLM, or `llm` in research-loop.toml), written as
`provider:model`, in the spirit of simonw/llm:

- `offline` (the default): no model; each stage uses its deterministic rules instead.
- `openai:<model>`: OpenAI's API; the key comes from `api_key` or OPENAI_API_KEY.
- `openai-compatible:<model>`: any server that speaks OpenAI's chat-completions API at `base_url`
  (vLLM, Ollama, llama.cpp's server, LM Studio), through the same client.

`ask` is what the planner, the coder and the analyst use: it asks for an answer in a pydantic schema through
LangChain's structured output (a forced tool call), falls back to JSON in plain text when the server cannot
call tools, and sends every invalid answer back with its validation errors for a bounded number of repairs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

import templates
from agent.config import Settings
from agent.schemas import TokenUsage

OFFLINE = "offline"
TIMEOUT_S = 120.0
MAX_RETRIES = 2
MAX_ERRORS_SHOWN = 20

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class LLMError(RuntimeError):
    """Talking to a model failed; the message is one line that says why."""


class LLMConfigError(LLMError):
    """The `llm` setting names no usable provider, or the provider lacks a key or address."""


class LLMCallError(LLMError):
    """The server could not be reached or refused the request."""


class LLMAnswerError(LLMError):
    """The model gave no valid answer within the repairs allowed; `errors` are the last answer's problems."""

    def __init__(self, message: str, errors: list[str], usage: TokenUsage):
        super().__init__(message)
        self.errors = errors
        self.usage = usage


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float


# OpenAI's published list prices (standard tier, USD per 1M tokens) as of August 2025. A model missing here
# has its tokens counted but no cost reported, rather than a guessed one.
PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o3": Price(2.00, 8.00),
    "o4-mini": Price(1.10, 4.40),
}


def price_of(model: str) -> Price | None:
    """The price of a model or of its dated snapshot ('gpt-4o-mini-2024-07-18' is priced as 'gpt-4o-mini')."""
    known = [name for name in PRICES if model == name or model.startswith(name + "-")]
    return PRICES[max(known, key=len)] if known else None


@dataclass(frozen=True)
class ChatLLM:
    """A connected chat model, with what is needed to account for it."""

    spec: str
    model: str
    chat: BaseChatModel
    where: str
    price: Price | None = None

    def usage(self, message: AIMessage) -> TokenUsage:
        meta = message.usage_metadata or {}
        tokens_in, tokens_out = int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
        cost = None
        if self.price is not None:
            cost = (tokens_in * self.price.input + tokens_out * self.price.output) / 1e6
        return TokenUsage(input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost, calls=1)


Factory = Callable[[str, Settings], ChatLLM]
PROVIDERS: dict[str, Factory] = {}


def provider(name: str) -> Callable[[Factory], Factory]:
    """Register a provider under `name`; `<name>:<model>` in the `llm` setting then selects it."""

    def register(factory: Factory) -> Factory:
        PROVIDERS[name] = factory
        return factory

    return register


def _chat_openai(model: str, api_key: str, base_url: str | None, **extra: Any) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=model,
        api_key=api_key,
        base_url=base_url,
        timeout=TIMEOUT_S,
        max_retries=MAX_RETRIES,
        **extra,
    )


@provider("openai")
def _openai(model: str, settings: Settings) -> ChatLLM:
    key = settings.openai_key()
    if not key:
        raise LLMConfigError(
            f"openai:{model} needs an API key: set OPENAI_API_KEY or RESEARCH_LOOP_API_KEY "
            f"(or use --llm offline)"
        )
    chat = _chat_openai(model, key, settings.base_url)
    where = settings.base_url or "https://api.openai.com/v1"
    return ChatLLM(spec=f"openai:{model}", model=model, chat=chat, where=where, price=price_of(model))


@provider("openai-compatible")
def _openai_compatible(model: str, settings: Settings) -> ChatLLM:
    if not settings.base_url:
        raise LLMConfigError(
            f"openai-compatible:{model} needs the server's address: set RESEARCH_LOOP_BASE_URL or base_url "
            f"in research-loop.toml, e.g. http://localhost:8000/v1"
        )
    # Local servers ignore the key but the client insists on one. Chat completions, not OpenAI's newer
    # Responses API, because that is what compatible servers implement; temperature 0 because small local
    # models keep to a JSON schema better without sampling noise.
    chat = _chat_openai(
        model,
        settings.openai_key() or "not-needed",
        settings.base_url,
        use_responses_api=False,
        temperature=0,
    )
    return ChatLLM(spec=f"openai-compatible:{model}", model=model, chat=chat, where=settings.base_url)


def parse_spec(spec: str) -> tuple[str, str]:
    """'openai:gpt-4o-mini' -> ('openai', 'gpt-4o-mini'); 'offline' -> ('offline', '')."""
    name, _, model = spec.strip().partition(":")
    if name == OFFLINE and not model:
        return OFFLINE, ""
    if name not in PROVIDERS:
        known = ", ".join([OFFLINE, *(f"{p}:<model>" for p in PROVIDERS)])
        raise LLMConfigError(f"unknown LLM provider {name!r} in {spec!r}; use one of {known}")
    if not model.strip():
        raise LLMConfigError(f"{spec!r} names no model; write it as {name}:<model>")
    return name, model.strip()


def is_offline(settings: Settings) -> bool:
    return parse_spec(settings.llm)[0] == OFFLINE


def connect(settings: Settings) -> ChatLLM:
    name, model = parse_spec(settings.llm)
    if name == OFFLINE:
        raise LLMConfigError("the offline setting has no chat model; each stage uses its own rules")
    return PROVIDERS[name](model, settings)


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


def errors_of(exc: Exception) -> list[str]:
    """Readable problems from a failed validation, one per broken rule, as a model can act on them."""
    if isinstance(exc, ValidationError):
        out = []
        for e in exc.errors(include_url=False):
            where = ".".join(str(part) for part in e["loc"]) or "answer"
            message = e["msg"].removeprefix("Value error, ")
            out.append(f"{where}: {message}")
        return out
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return [str(e) for e in errors]
    return [str(exc)]


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


def _describe(exc: openai.APIError) -> str:
    """What went wrong with a request, in words that point at the fix (address, key, model name)."""
    if isinstance(exc, openai.APITimeoutError):
        return f"no answer within {TIMEOUT_S:g} s"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect ({_one_line(exc)}); is the server running at that address?"
    if isinstance(exc, openai.APIStatusError):
        body = exc.body.get("message") if isinstance(exc.body, dict) else None
        return f"HTTP {exc.status_code}: {_one_line(body or exc)}"
    return _one_line(exc)


def _one_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


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
        except openai.BadRequestError as exc:
            if mode == "text":
                raise LLMCallError(f"{llm.spec} at {llm.where}: {_describe(exc)}") from None
            # servers without tool calling (vLLM without auto tool choice, some Ollama models) refuse with 400
            mode = "text"
            history.append(_json_only(schema))
            continue
        except openai.APIError as exc:
            raise LLMCallError(f"{llm.spec} at {llm.where}: {_describe(exc)}") from None
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            # what the client raises on a 200 reply that is not a chat completion (no choices, wrong shapes)
            raise LLMCallError(
                f"{llm.spec} at {llm.where}: the reply is not a chat completion ({type(exc).__name__}: "
                f"{_one_line(exc)})"
            ) from None
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
