"""Chat-model providers, and a way to get a validated pydantic object out of any of them.

One setting picks the model (`--llm`, RESEARCH_LOOP_LLM, or `llm` in research-loop.toml), written as
`provider:model`, in the spirit of simonw/llm:

- `offline` (the default): no model; each stage uses its deterministic rules instead.
- `openai-compatible:<model>`: any server that speaks OpenAI's chat-completions API at `base_url`
  (vLLM, Ollama's /v1, llama.cpp's server, LM Studio), through langchain-openai's client.
- any other `<provider>:<model>` (openai, anthropic, google_genai, mistralai, ollama, groq, ...): LangChain's
  `init_chat_model`, so every provider whose LangChain package is installed works without code of ours. The
  key comes from `api_key` or the provider's own variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...); a missing
  package or key is refused before any request, in one line that names what to install or set.

`ask` is what the planner, the coder and the analyst use: it asks for an answer in a pydantic schema through
LangChain's structured output (a forced tool call), falls back to JSON in plain text when the server cannot
call tools, and sends every invalid answer back with its validation errors for a bounded number of repairs.
Failed requests are told apart by langchain-core's provider-neutral errors (ModelConnectionError, ...), so
the same one-line messages come from every provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from langchain.chat_models import init_chat_model
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelConnectionError,
    ModelInvalidRequestError,
    ModelTimeoutError,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, SecretStr, ValidationError

import templates
from agent.config import Settings
from agent.schemas import TokenUsage

OFFLINE = "offline"
COMPATIBLE = "openai-compatible"
TIMEOUT_S = 120.0
MAX_RETRIES = 2
MAX_ERRORS_SHOWN = 20
# the variable an API key is read from when a provider's class names it in its error
_KEY_VARIABLE = re.compile(r"\b[A-Z][A-Z0-9_]*_API_KEY\b")
_PIP_INSTALL = re.compile(r"pip install [`\"']*([A-Za-z0-9_.\-\[\]]+)")

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class LLMError(RuntimeError):
    """Talking to a model failed; the message is one line that says why."""


class LLMConfigError(LLMError):
    """The `llm` setting names no usable provider, or the provider lacks its package, key or address."""


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


# Published list prices (standard tier, USD per 1M tokens) by provider, as of August 2025. A model missing
# here has its tokens counted but no cost reported, rather than a guessed one.
PRICES: dict[str, dict[str, Price]] = {
    "openai": {
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
    },
}


def price_of(provider: str, model: str) -> Price | None:
    """The price of a model or of its dated snapshot ('gpt-4o-mini-2024-07-18' is priced as 'gpt-4o-mini')."""
    prices = PRICES.get(provider, {})
    known = [name for name in prices if model == name or model.startswith(name + "-")]
    return prices[max(known, key=len)] if known else None


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


def parse_spec(spec: str) -> tuple[str, str]:
    """'openai:gpt-4o-mini' -> ('openai', 'gpt-4o-mini'); 'offline' -> ('offline', '').

    Only the form is checked here; whether LangChain knows the provider is found out by `connect`.
    """
    name, _, model = spec.strip().partition(":")
    name, model = name.strip(), model.strip()
    if name == OFFLINE and not model:
        return OFFLINE, ""
    if not name:
        raise LLMConfigError(
            f"{spec!r} names no provider; write it as <provider>:<model>, e.g. openai:gpt-4o-mini"
        )
    if not model:
        raise LLMConfigError(f"{spec!r} names no model; write it as {name}:<model>")
    return name, model


def is_offline(settings: Settings) -> bool:
    return parse_spec(settings.llm)[0] == OFFLINE


def connect(settings: Settings) -> ChatLLM:
    """The configured chat model, ready to call; LLMConfigError (one line) when it cannot be set up."""
    name, model = parse_spec(settings.llm)
    if name == OFFLINE:
        raise LLMConfigError("the offline setting has no chat model; each stage uses its own rules")
    spec = f"{name}:{model}"
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    if name == COMPATIBLE:
        if not settings.base_url:
            raise LLMConfigError(
                f"{spec} needs the server's address: set RESEARCH_LOOP_BASE_URL or base_url "
                f"in research-loop.toml, e.g. http://localhost:8000/v1"
            )
        # Local servers ignore the key but the client insists on one (never OPENAI_API_KEY: that is for
        # OpenAI, not for whoever runs this address). Chat completions, not OpenAI's newer Responses API,
        # because that is what compatible servers implement; temperature 0 because small local models keep
        # to a JSON schema better without sampling noise.
        chat = _init_chat(
            spec,
            model,
            "openai",
            api_key=key or "not-needed",
            base_url=settings.base_url,
            use_responses_api=False,
            temperature=0,
        )
        return ChatLLM(spec=spec, model=model, chat=chat, where=settings.base_url)
    given = {"api_key": key, "base_url": settings.base_url}
    chat = _init_chat(spec, model, name, **{k: v for k, v in given.items() if v})
    variable = _missing_key(chat)
    if variable is not None:
        raise LLMConfigError(_needs_key(spec, variable))
    where = settings.base_url or f"the {name} API"
    return ChatLLM(spec=spec, model=model, chat=chat, where=where, price=price_of(name, model))


def _init_chat(spec: str, model: str, provider: str, **kwargs: Any) -> BaseChatModel:
    """LangChain's chat model for `provider`, or LLMConfigError naming what to install, set or fix."""
    try:
        return init_chat_model(
            model, model_provider=provider, timeout=TIMEOUT_S, max_retries=MAX_RETRIES, **kwargs
        )
    except ImportError as exc:
        package = _package(exc, provider)
        raise LLMConfigError(
            f"{spec} needs the {package} package: pip install {package} (or use --llm offline)"
        ) from None
    except ValidationError as exc:
        raise LLMConfigError(f"{spec} cannot be set up: {'; '.join(errors_of(exc))}") from None
    except ValueError as exc:
        # init_chat_model's documented ValueError: a provider it does not know, listing those it does
        text = " ".join(str(exc).split())
        if not text.startswith("Unsupported"):
            raise LLMConfigError(f"{spec} cannot be set up: {_one_line(text)}") from None
        known = text.rpartition(":")[2].strip()
        raise LLMConfigError(
            f"unknown LLM provider {provider!r} in {spec!r}; use {OFFLINE}, {COMPATIBLE}:<model> or one of "
            f"LangChain's providers: {known}"
        ) from None
    except Exception as exc:  # the provider's own class refused to start, most often for want of a key
        found = _KEY_VARIABLE.search(str(exc))
        if found:
            raise LLMConfigError(_needs_key(spec, found.group(0))) from None
        raise LLMConfigError(f"{spec} cannot be set up: {_one_line(exc)}") from None


def _package(exc: ImportError, provider: str) -> str:
    """The package to pip install: the one LangChain's message names, else by LangChain's naming rule."""
    found = _PIP_INSTALL.search(str(exc))
    return found.group(1) if found else f"langchain-{provider.replace('_', '-')}"


def _missing_key(chat: BaseChatModel) -> str | None:
    """The variable of the API key a model was made without, from LangChain's own map of its secrets
    (`lc_secrets`: constructor field -> environment variable); None when it has one or needs none."""
    keys = {field: variable for field, variable in chat.lc_secrets.items() if variable.endswith("_KEY")}
    if not keys or any(_present(getattr(chat, field, None)) for field in keys):
        return None
    return next(iter(keys.values()))


def _present(secret: object) -> bool:
    if isinstance(secret, SecretStr):
        return bool(secret.get_secret_value())
    return bool(secret)


def _needs_key(spec: str, variable: str) -> str:
    return f"{spec} needs an API key: set {variable} or RESEARCH_LOOP_API_KEY (or use --llm offline)"


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
