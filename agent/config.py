"""Settings: defaults, then a TOML file, then RESEARCH_LOOP_* environment variables, then command-line flags.

The TOML file is `research-loop.toml` in the working directory, or the path in RESEARCH_LOOP_CONFIG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE = "research-loop.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RESEARCH_LOOP_", extra="ignore")

    llm: str = Field(
        default="offline",
        description="offline | openai-compatible:<model> (with base_url) | <provider>:<model> for any "
        "provider LangChain's init_chat_model knows whose package is installed, e.g. anthropic:claude-sonnet-4-5",
    )
    base_url: str | None = Field(
        default=None,
        description="the server's address: required for openai-compatible (e.g. http://localhost:8000/v1), "
        "otherwise it replaces the provider's own endpoint",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="the provider's API key; unset, each provider reads its own variable (OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY, ...)",
    )
    reports_dir: Path = Path("reports")
    storage: str | None = Field(
        default=None, description="Optuna storage URL; default: journal file in the run"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_trials: int = Field(default=500, ge=1, description="cap on any plan's trial budget")
    max_rounds: int = Field(default=5, ge=1)
    max_tokens: int = Field(default=200_000, ge=1, description="cap on LLM tokens for one run")
    llm_repairs: int = Field(default=2, ge=0, description="times an invalid LLM answer is sent back")
    llm_timeout_s: float = Field(
        default=120,
        gt=0,
        description="seconds one LLM answer may take; sized for hosted APIs: a local model on a CPU can need "
        "minutes (e.g. 900)",
    )
    llm_answer_tokens: int = Field(
        default=1024, ge=64, description="the most tokens one LLM answer may have: the room a prompt leaves"
    )
    llm_context_tokens: int | None = Field(
        default=None,
        ge=512,
        description="the model's context window when its server does not report one (llama.cpp and Ollama "
        "do); a prompt that does not fit with its answer is refused before it is sent",
    )
    llm_structured: Literal["auto", "json_schema", "json_object", "tools", "text"] = Field(
        default="auto",
        description="how an answer is constrained: auto tries a JSON-schema response format where the API "
        "has one, then a forced tool call, then JSON in plain text",
    )
    trial_timeout_s: float = Field(default=600, gt=0)
    sandbox: Literal["auto", "require", "off"] = Field(
        default="auto",
        description="how trial code is boxed: auto (bubblewrap when it runs here, else a scrubbed environment "
        "and limits), require (refuse to run without bubblewrap), off (no isolation; the report says so)",
    )
    memory_limit_mb: int | None = Field(
        default=None, ge=256, description="address-space limit of each trial process; default: a share of RAM"
    )
    trust_edits: bool = Field(
        default=False,
        description="let a model-written change run although it adds system imports, eval/exec or writes "
        "outside the script's folder (read patch.diff first)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("RESEARCH_LOOP_CONFIG", CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))


def load(**overrides: object) -> Settings:
    """Settings with command-line overrides; a None override means 'not given on the command line'."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
