"""What a self-hosted chat server says about itself, and whether a prompt fits it, found out before asking.

A local server given a prompt longer than its context cuts it without an error (Ollama) or refuses it after it
has queued (llama.cpp), and a CPU spends minutes on a prompt before either shows. So the context window is read
where the server reports it (llama.cpp's `/props`, vLLM's `max_model_len` in `/v1/models`, Ollama's
`/api/show`, whose OpenAI-compatible route runs at `num_ctx`, 4,096 unless the model sets more), or taken from
the `llm_context_tokens` setting (llama-cpp-python's server reports none), and a prompt that cannot fit with
its answer is refused before it is sent, in one line naming what to change.

Prompt sizes are estimates at `CHARS_PER_TOKEN` characters a token. Qwen2.5-Coder's own tokenizer took 3.56
to 3.74 characters a token on the planning and revision prompts of the planning bench's 20 ideas, 3.86 to 4.27
on the code-edit prompts of the task and example scripts and 4.07 on the schemas (2026-12-04), so at 3.4 the
estimate errs on the large side, by 5 to 25%.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import httpx
from langchain_core.messages import BaseMessage

CHARS_PER_TOKEN = 3.4
MESSAGE_TOKENS = 8  # what a chat template adds around each message (role markers, separators)
PROBE_TIMEOUT_S = 3.0
OLLAMA_DEFAULT_CONTEXT = 4096
_FOUND: dict[tuple[str, str], tuple[int, str] | None] = {}


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_tokens(messages: Sequence[BaseMessage], schema: str = "") -> int:
    """The estimated size of a request: its messages, and the schema sent beside them (tools put it in the
    prompt; a response format turns it into a grammar, which costs no prompt tokens but is counted anyway)."""
    texts = [m.content if isinstance(m.content, str) else json.dumps(m.content) for m in messages]
    return sum(estimate_tokens(t) + MESSAGE_TOKENS for t in texts) + estimate_tokens(schema)


def context_window(base_url: str, model: str, ollama: bool = False) -> tuple[int, str] | None:
    """The server's context in tokens and the route that said so, or None where it says nothing; asked once
    per server and model, each route given PROBE_TIMEOUT_S."""
    key = (base_url, model)
    if key not in _FOUND:
        _FOUND[key] = _ask_server(base_url.rstrip("/"), model, ollama)
    return _FOUND[key]


def _ask_server(base: str, model: str, ollama: bool) -> tuple[int, str] | None:
    root = base.removesuffix("/v1")
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        if ollama or root.endswith(":11434"):
            shown = _json(client, "POST", f"{root}/api/show", {"model": model})
            if shown is not None:
                return _ollama_context(shown), f"{root}/api/show"
        props = _json(client, "GET", f"{root}/props")
        if props is not None:
            settings = props.get("default_generation_settings") or {}
            n_ctx = settings.get("n_ctx") or props.get("n_ctx")
            if isinstance(n_ctx, int) and n_ctx > 0:
                return n_ctx, f"{root}/props"
        listed = _json(client, "GET", f"{base}/models")
        for entry in (listed or {}).get("data") or []:
            if isinstance(entry, dict) and entry.get("id") in (model, None):
                size = entry.get("max_model_len")  # llama.cpp's meta holds n_ctx_train, not the runtime's
                if isinstance(size, int) and size > 0:
                    return size, f"{base}/models"
    return None


def _json(client: httpx.Client, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    """A route's JSON object, or None for anything else (no such route, no server, not JSON)."""
    try:
        reply = client.request(method, url, json=body)
        value = reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _ollama_context(shown: dict[str, Any]) -> int:
    """The context Ollama's /v1 route runs a model at: its num_ctx parameter, else Ollama's default, never more
    than the model was trained for."""
    context = OLLAMA_DEFAULT_CONTEXT
    for line in str(shown.get("parameters") or "").splitlines():
        name, _, value = line.partition(" ")
        if name == "num_ctx" and value.strip().isdigit():
            context = int(value.strip())
    trained = [v for k, v in (shown.get("model_info") or {}).items() if k.endswith(".context_length")]
    return min([context, *[v for v in trained if isinstance(v, int)]])
