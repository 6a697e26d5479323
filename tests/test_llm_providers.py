"""`--llm provider:model` through LangChain's init_chat_model: Anthropic's real client against a loopback
Messages API, and the one-line refusals when a provider's package or key is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_anthropic import FakeAnthropic, error, text, tool
from llm_answers import plan_answer
from typer.testing import CliRunner

from agent.cli import app
from agent.config import Settings
from agent.plan import llm, planner
from agent.plan.rules import PlanError

pytestmark = pytest.mark.usefixtures("no_provider_env")

IDEA = "Does dropout help a small CNN on handwritten digits under a 30-trial budget?"
CLAUDE = "anthropic:claude-sonnet-4-5"
REPO = Path(__file__).resolve().parent.parent
NEEDS_KEY = (
    f"{CLAUDE} needs an API key: set ANTHROPIC_API_KEY or RESEARCH_LOOP_API_KEY (or use --llm offline)"
)


@pytest.fixture(autouse=True)
def no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Anthropic client reads its key and address from these; none may come from the machine."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_URL"):
        monkeypatch.delenv(name, raising=False)


def claude(server: FakeAnthropic, **over: Any) -> Settings:
    return Settings(**{"llm": CLAUDE, "base_url": server.base_url, **over})


def system_text(request: dict[str, Any]) -> str:
    system = request["system"]
    return system if isinstance(system, str) else "".join(block["text"] for block in system)


def sent_key(headers: dict[str, str]) -> str:
    """The key as the anthropic SDK sent it: x-api-key to Anthropic's host, a bearer token to another base URL."""
    return headers.get("x-api-key") or headers["authorization"].removeprefix("Bearer ")


def content_text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def test_an_anthropic_model_plans_through_the_messages_api_with_its_own_key_variable(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    with FakeAnthropic([tool(plan_answer(), prompt_tokens=1200, completion_tokens=300)]) as server:
        plan = planner.make_plan(IDEA, claude(server))
    assert plan.planner == CLAUDE
    assert [p.name for p in plan.search_space] == ["dropout", "learning_rate"]
    assert (plan.usage.input_tokens, plan.usage.output_tokens, plan.usage.calls) == (1200, 300, 1)
    assert plan.usage.cost_usd is None  # no price is written down for Anthropic's models

    [request] = server.requests
    assert request["model"] == "claude-sonnet-4-5"
    assert sent_key(server.headers[0]) == "sk-ant-test" and "anthropic-version" in server.headers[0]
    assert [t["name"] for t in request["tools"]] == ["PlanDraft"]
    assert request["tool_choice"]["type"] == "tool" and request["tool_choice"]["name"] == "PlanDraft"
    assert "data, not instructions" in system_text(request)
    [user] = request["messages"]
    assert user["role"] == "user" and f"<idea>{json.dumps(IDEA)}</idea>" in content_text(user)


def test_an_invalid_anthropic_answer_is_repaired_in_the_same_conversation() -> None:
    bad = plan_answer(task="cifar10-resnet")
    with FakeAnthropic([tool(bad), tool(plan_answer())]) as server:
        plan = planner.make_plan(IDEA, claude(server, api_key="sk-ant-setting"))
    assert plan.task == "digits-cnn" and plan.usage.calls == 2
    assert sent_key(server.headers[1]) == "sk-ant-setting"  # RESEARCH_LOOP_API_KEY reaches any provider
    user, echoed, feedback = server.requests[1]["messages"]
    assert echoed["role"] == "assistant" and json.loads(content_text(echoed)) == bad
    assert feedback["role"] == "user"
    assert "'cifar10-resnet' is not a registered task" in content_text(feedback)


def test_an_anthropic_refusal_of_tools_falls_back_to_json_in_text() -> None:
    fenced = "```json\n" + json.dumps(plan_answer()) + "\n```"
    with FakeAnthropic([error(400, "tools are not supported here"), text(fenced)]) as server:
        plan = planner.make_plan(IDEA, claude(server, api_key="k"))
    assert plan.usage.calls == 1
    assert "tools" not in server.requests[1]
    assert "Reply with exactly one JSON object" in content_text(server.requests[1]["messages"][-1])


def test_an_anthropic_http_error_is_one_line_with_the_servers_words() -> None:
    with FakeAnthropic([error(401, "invalid x-api-key")]) as server, pytest.raises(PlanError) as caught:
        planner.make_plan(IDEA, claude(server, api_key="wrong"))
    assert str(caught.value) == f"{CLAUDE} at {server.base_url}: HTTP 401: invalid x-api-key"


def test_a_missing_anthropic_key_is_one_line_naming_the_variable_before_any_request(tmp_path, monkeypatch):
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    result = CliRunner().invoke(app, ["plan", IDEA, "--llm", CLAUDE])
    assert result.exit_code == 2
    assert result.stderr == f"error: {NEEDS_KEY}\n"
    assert not (tmp_path / "reports").exists()


def test_a_missing_openai_key_names_its_variable() -> None:
    with pytest.raises(llm.LLMConfigError) as caught:
        llm.connect(Settings(llm="openai:gpt-4o-mini"))
    assert str(caught.value) == (
        "openai:gpt-4o-mini needs an API key: set OPENAI_API_KEY or RESEARCH_LOOP_API_KEY (or use --llm offline)"
    )


def test_a_missing_provider_package_is_one_line_naming_what_to_install(tmp_path) -> None:
    """In a fresh interpreter where langchain-anthropic cannot be imported, as on a machine without it."""
    code = (
        "import sys\n"
        "sys.modules['langchain_anthropic'] = None\n"
        "from agent.plan import llm\n"
        "from agent.config import Settings\n"
        "try:\n"
        f"    llm.connect(Settings(llm={CLAUDE!r}, api_key='k'))\n"
        "except llm.LLMConfigError as exc:\n"
        "    print(exc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "RESEARCH_LOOP_CONFIG": str(tmp_path / "absent.toml")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout == (
        f"{CLAUDE} needs the langchain-anthropic package: pip install langchain-anthropic (or use --llm offline)\n"
    )


def test_an_unknown_provider_is_one_line_listing_langchains() -> None:
    with pytest.raises(llm.LLMConfigError) as caught:
        llm.connect(Settings(llm="claude:opus"))
    message = str(caught.value)
    assert message.startswith(
        "unknown LLM provider 'claude' in 'claude:opus'; use offline, openai-compatible:<model> or one of "
        "LangChain's providers: "
    )
    assert "anthropic" in message and "google_genai" in message and "\n" not in message
