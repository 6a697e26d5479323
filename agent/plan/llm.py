"""Chat-model providers: the `llm` setting, the connection to the model it names, and what its tokens cost.

One setting picks the model (`--llm`, RESEARCH_LOOP_LLM, or `llm` in research-loop.toml), written as
`provider:model`, in the spirit of simonw/llm:

- `offline` (the default): no model; each stage uses its deterministic rules instead.
- `openai-compatible:<model>`: any server that speaks OpenAI's chat-completions API at `base_url`
  (vLLM, Ollama's /v1, llama.cpp's server, LM Studio), through langchain-openai's client.
- any other `<provider>:<model>` (openai, anthropic, google_genai, mistralai, ollama, groq, ...): LangChain's
  `init_chat_model`, so every provider whose LangChain package is installed works without code of ours. The
  key comes from `api_key` or the provider's own variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...); a missing
  package or key is refused before any request, in one line that names what to install or set.

A self-hosted server (`openai-compatible`, `ollama`) is one model on one slot that may need minutes an
answer: its requests are streamed (a server stops working on an answer its client has stopped reading), never
retried (a retry queues behind the abandoned request), and sized against its context window first
(`serving`). The request timeout is `llm_timeout_s` for every provider.

The structured call that gets a validated pydantic object out of a connected model, `ask`, is in `structured`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from pydantic import SecretStr, ValidationError

from agent.config import Settings
from agent.schemas import TokenUsage

OFFLINE = "offline"
COMPATIBLE = "openai-compatible"
SELF_HOSTED = (COMPATIBLE, "ollama")
MAX_RETRIES = 2  # for hosted APIs, which answer a retry on another replica
# How each provider can be made to answer in a schema, best first (`structured` falls back along the list when
# a server refuses one): OpenAI's json_schema response format (llama.cpp's server, vLLM, Ollama, OpenAI); a
# forced tool call; the json_object-with-schema dialect of llama-cpp-python; JSON asked for in plain text.
# llama-cpp-python refuses json_schema; there a tool call and json_object are both a grammar and generated as
# fast, and tools were valid more often, so tools come first (bench/results/planning-modes-*.md).
MODES: dict[str, tuple[str, ...]] = {
    COMPATIBLE: ("json_schema", "tools", "json_object", "text"),
    "openai": ("json_schema", "tools", "text"),
}
OTHER_MODES = ("tools", "text")
# the variable an API key is read from when a provider's class names it in its error
_KEY_VARIABLE = re.compile(r"\b[A-Z][A-Z0-9_]*_API_KEY\b")
_PIP_INSTALL = re.compile(r"pip install [`\"']*([A-Za-z0-9_.\-\[\]]+)")


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
    timeout_s: float = 120.0
    answer_tokens: int = 1024
    context_tokens: int | None = None
    modes: tuple[str, ...] = OTHER_MODES

    @property
    def provider(self) -> str:
        return self.spec.partition(":")[0]

    @property
    def self_hosted(self) -> bool:
        return self.provider in SELF_HOSTED

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
        # to a JSON schema better without sampling noise. Usage is asked for in streams (include_usage), which
        # llama-cpp-python ignores and the others honour.
        chat = _init_chat(
            spec,
            model,
            "openai",
            settings,
            api_key=key or "not-needed",
            base_url=settings.base_url,
            use_responses_api=False,
            temperature=0,
            stream_usage=True,
        )
        return _connected(settings, spec, model, chat, settings.base_url)
    given = {"api_key": key, "base_url": settings.base_url}
    chat = _init_chat(spec, model, name, settings, **{k: v for k, v in given.items() if v})
    variable = _missing_key(chat)
    if variable is not None:
        raise LLMConfigError(_needs_key(spec, variable))
    where = settings.base_url or f"the {name} API"
    return _connected(settings, spec, model, chat, where, price_of(name, model))


def _connected(
    settings: Settings, spec: str, model: str, chat: BaseChatModel, where: str, price: Price | None = None
) -> ChatLLM:
    modes = MODES.get(spec.partition(":")[0], OTHER_MODES)
    if settings.llm_structured != "auto":
        chosen = settings.llm_structured
        modes = modes[modes.index(chosen) :] if chosen in modes else (chosen, "text")
    return ChatLLM(
        spec=spec,
        model=model,
        chat=chat,
        where=where,
        price=price,
        timeout_s=settings.llm_timeout_s,
        answer_tokens=settings.llm_answer_tokens,
        context_tokens=settings.llm_context_tokens,
        modes=tuple(dict.fromkeys(modes)),
    )


def _init_chat(spec: str, model: str, provider: str, settings: Settings, **kwargs: Any) -> BaseChatModel:
    """LangChain's chat model for `provider`, or LLMConfigError naming what to install, set or fix."""
    retries = 0 if spec.partition(":")[0] in SELF_HOSTED else MAX_RETRIES
    try:
        return init_chat_model(
            model,
            model_provider=provider,
            timeout=settings.llm_timeout_s,
            max_retries=retries,
            max_tokens=settings.llm_answer_tokens,
            **kwargs,
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


def _one_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
