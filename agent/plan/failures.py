"""What a failed call to a model means, in one line that points at the fix (a setting, the address, the
model), and whether asking the same server another way (a different response mode) could help."""

from __future__ import annotations

import re

import httpx
from langchain_core.exceptions import ContextOverflowError, ModelConnectionError, ModelTimeoutError

from agent.plan.llm import ChatLLM, _one_line

_NAMES_MODE = re.compile(r"response_format|tool", re.IGNORECASE)
_TOO_LONG = re.compile(r"context|too long|maximum.*tokens|exceed", re.IGNORECASE)


class Overdue(Exception):
    """A streamed answer ran past llm_timeout_s."""


def describe(exc: Exception, llm: ChatLLM) -> str:
    """What went wrong with a request, in words that point at the fix (a setting, the address, the model)."""
    if isinstance(exc, ModelTimeoutError | httpx.TimeoutException | Overdue):
        again = "; it was not retried" if llm.self_hosted else ""
        return (
            f"no answer within {llm.timeout_s:g} s{again}; a model on a CPU can need minutes: raise "
            "llm_timeout_s (RESEARCH_LOOP_LLM_TIMEOUT_S)"
        )
    if isinstance(exc, ModelConnectionError | httpx.ConnectError):
        return f"cannot connect ({_one_line(exc)}); is the server running at that address?"
    status = status_of(exc)
    if status is not None:
        said = _one_line(_server_message(exc))
        if isinstance(exc, ContextOverflowError) or (status == 400 and _TOO_LONG.search(said)):
            return (
                f"HTTP {status}: {said}; give the server a larger context (llama.cpp --n_ctx, Ollama num_ctx) "
                "or lower llm_answer_tokens"
            )
        return f"HTTP {status}: {said}"
    if isinstance(exc, LookupError | TypeError | ValueError | AttributeError):
        # what a client raises on a 200 reply that is not a chat answer (no choices, wrong shapes)
        return f"the reply is not a chat completion ({type(exc).__name__}: {_one_line(exc)})"
    return _one_line(exc)


def status_of(exc: Exception) -> int | None:
    """The HTTP status of a refused request: on the SDK's error (openai, anthropic, groq, ...) or its response."""
    for holder in (exc, getattr(exc, "response", None)):
        status = getattr(holder, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def refuses_mode(exc: Exception) -> bool:
    """A 400 or 422 for a request with a response format or tools, or a 500 that names them (llama-cpp-python
    answers an unknown response format type with a 500 quoting its validation error): the server cannot answer
    that way (vLLM without auto tool choice, llama-cpp-python's json_schema), so the next mode may work; a
    prompt too long for the context would not be helped by that."""
    said = _server_message(exc)
    if isinstance(exc, ContextOverflowError) or _TOO_LONG.search(said):
        return False
    status = status_of(exc)
    return status in (400, 422) or (status == 500 and bool(_NAMES_MODE.search(said)))


def _server_message(exc: Exception) -> str:
    """The server's own words: OpenAI's error body is {"message"}, Anthropic's {"error": {"message"}}."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if isinstance(inner.get("message"), str):
            return inner["message"]
    return str(exc)
