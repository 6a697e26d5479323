"""A model on a slow self-hosted server: prompts that fit a 4,096-token context, the context window checked
before sending, the timeout as a setting, progress while waiting, usage where a stream carries none; and, opt-in,
one plan from a real server (RESEARCH_LOOP_TEST_LLM_URL, e.g. http://127.0.0.1:8089/v1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, text, tool
from llm_answers import plan_answer
from typer.testing import CliRunner

from agent.cli import app
from agent.code import coder
from agent.config import Settings
from agent.plan import planner, serving, structured
from agent.plan.draft import draft_of
from agent.plan.rules import PlanError
from agent.results import Finding
from agent.schemas import CodeChangeIntent
from experiments import registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from planning_ideas import IDEAS  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_provider_env")

IDEA = "Does dropout help a small CNN on handwritten digits under a 30-trial budget?"
MODEL = "openai-compatible:fake-model"
CONTEXT = 4096
REAL_URL = os.environ.get("RESEARCH_LOOP_TEST_LLM_URL")
REAL_MODEL = os.environ.get("RESEARCH_LOOP_TEST_LLM_MODEL", "qwen2.5-coder-1.5b")
EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


@pytest.fixture(autouse=True)
def fresh_server_facts() -> None:
    """Each test's fake is a new server: what an earlier one reported or accepted says nothing about it."""
    serving._FOUND.clear()
    structured._TAKEN.clear()


def settings(server: FakeOpenAI, **over: Any) -> Settings:
    return Settings(**{"llm": MODEL, "base_url": server.base_url, **over})


def fits(messages: list[Any], schema: type) -> int:
    """The estimated request size with the tool schema counted, plus the room kept for the answer."""
    return serving.prompt_tokens(messages, structured.schema_json(schema)) + Settings().llm_answer_tokens


@pytest.mark.parametrize("number", range(len(IDEAS)))
def test_every_bench_ideas_planning_prompt_fits_a_4096_token_context_with_its_answer(number: int) -> None:
    messages = planner.plan_prompt(IDEAS[number].text, Settings())
    assert fits(messages, planner.PlanDraft) <= CONTEXT


@pytest.mark.parametrize("number", [0, 4, 9, 17])
def test_the_revision_prompt_fits_too(number: int) -> None:
    idea = IDEAS[number].text
    plan = planner.make_plan(idea, Settings())
    findings = [
        Finding(kind="edge", param=p.name, message="best values sit on the upper edge", evidence={"high": 1})
        for p in plan.search_space
    ]
    messages = planner.plan_messages(
        planner.REVISE_PROMPT,
        idea,
        Settings(),
        plan.task,
        current=structured.compact(draft_of(plan)),
        findings=findings,
    )
    assert fits(messages, planner.PlanDraft) <= CONTEXT


@pytest.mark.parametrize(
    "script",
    [registry.get(name).script for name in registry.names()] + EXAMPLES,
    ids=lambda p: p.name,
)
def test_the_code_edit_prompt_fits_for_every_task_script_and_example(script: Path) -> None:
    change = CodeChangeIntent(kind="free_form", target="activation", description="use GELU instead of ReLU")
    messages = coder.edit_messages(script.name, script.read_text(), [change], "accuracy", ["learning_rate"])
    assert fits(messages, coder.EditAnswer) <= CONTEXT


def test_show_prompt_prints_the_prompt_and_its_size_and_asks_no_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    result = CliRunner().invoke(app, ["plan", IDEA, "--show-prompt", "--llm", "openai-compatible:none"])
    assert result.exit_code == 0, result.output
    assert "----- system -----" in result.output and "<idea>" in result.output
    size = result.output.rsplit("----- size -----\n", 1)[1]
    assert "characters in 2 messages, about" in size and "llm_answer_tokens" in size
    assert not (tmp_path / "reports").exists()


def test_a_timed_out_request_fails_once_in_one_line_naming_the_setting() -> None:
    with FakeOpenAI([tool(plan_answer(), delay_s=1.5)]) as server, pytest.raises(PlanError) as caught:
        planner.make_plan(IDEA, settings(server, llm_timeout_s=0.5))
    message = str(caught.value)
    assert message.startswith(f"{MODEL} at {server.base_url}: no answer within 0.5 s; it was not retried")
    assert "raise llm_timeout_s (RESEARCH_LOOP_LLM_TIMEOUT_S)" in message and "\n" not in message
    assert len(server.requests) == 1


def test_waiting_hears_how_long_the_answer_takes() -> None:
    heard: list[tuple[float, int]] = []
    with FakeOpenAI([tool(plan_answer(), delay_s=1.5)]) as server:
        planner.make_plan(IDEA, settings(server), waiting=lambda s, n: heard.append((s, n)))
    assert heard and heard[0][0] >= 1.0


def test_a_prompt_larger_than_the_context_the_server_reports_is_refused_before_sending() -> None:
    props = {"/props": {"default_generation_settings": {"n_ctx": 2048}}}
    with FakeOpenAI([tool(plan_answer())], gets=props) as server, pytest.raises(PlanError) as caught:
        planner.make_plan(IDEA, settings(server))
    assert not server.requests
    message = str(caught.value)
    assert "its answer up to 1024 (llm_answer_tokens), more than the 2048-token context" in message
    assert f"the server reports at {server.base_url.removesuffix('/v1')}/props; not sent" in message
    assert "set llm_context_tokens" in message and "\n" not in message


def test_the_context_setting_stands_in_for_a_server_that_reports_none() -> None:
    with (
        FakeOpenAI([tool(plan_answer())]) as server,
        pytest.raises(PlanError, match="set by llm_context_tokens"),
    ):
        planner.make_plan(IDEA, settings(server, llm_context_tokens=1024))
    assert not server.requests


def test_a_context_that_fits_lets_the_prompt_through() -> None:
    models = {"/v1/models": {"data": [{"id": "fake-model", "max_model_len": 32768}]}}
    with FakeOpenAI([tool(plan_answer())], gets=models) as server:
        planner.make_plan(IDEA, settings(server))
    assert "/v1/models" in server.asked and len(server.requests) == 1


def test_ollama_runs_its_openai_route_at_num_ctx_or_its_default() -> None:
    info = {"model_info": {"qwen2.context_length": 32768}}
    assert serving._ollama_context(info) == serving.OLLAMA_DEFAULT_CONTEXT
    assert serving._ollama_context({**info, "parameters": "stop <|im_end|>\nnum_ctx 8192"}) == 8192
    assert serving._ollama_context({"model_info": {"llama.context_length": 2048}}) == 2048


def test_a_stream_without_usage_has_its_tokens_estimated() -> None:
    with FakeOpenAI([tool(plan_answer(), stream_usage=False)]) as server:
        plan = planner.make_plan(IDEA, settings(server))
    sent = planner.plan_prompt(IDEA, Settings())
    assert plan.usage.input_tokens == serving.prompt_tokens(sent)
    assert 5 < plan.usage.output_tokens < 40  # one a streamed chunk


def test_an_answer_cut_at_the_token_limit_is_sent_back_saying_so() -> None:
    cut = text('{"task": "digits-cnn", "search_space": [{"na', finish="length")
    with FakeOpenAI([cut, tool(plan_answer())]) as server:
        planner.make_plan(IDEA, settings(server))
    feedback = server.requests[1]["messages"][-1]["content"]
    assert "answer: cut off at 1024 tokens (llm_answer_tokens); answer more briefly" in feedback


def test_a_repair_keeps_room_for_an_answer_about_as_long_as_the_last() -> None:
    """A repair prompt is longer than the first: its answer's room shrinks to twice the last answer's size
    (at least 256), so it still fits the context."""
    with FakeOpenAI([tool(plan_answer(task="nope"), completion_tokens=200), tool(plan_answer())]) as server:
        planner.make_plan(IDEA, settings(server))
    assert [r["max_tokens"] for r in server.requests] == [1024, 400]


def test_a_fragment_is_the_part_of_the_answer_an_error_names() -> None:
    answer = {
        "task": "x",
        "search_space": [{"name": "lr", "low": 1}],
        "arms": [{"name": "a", "fixed": {"w": 2}}],
    }
    assert structured.fragment(answer, "search_space[lr]: no such") == '{"name": "lr", "low": 1}'
    assert structured.fragment(answer, "search_space.0.low: bad") == '{"name": "lr", "low": 1}'
    assert structured.fragment(answer, "arms[a].fixed[w]: no such") == '{"w": 2}'
    assert structured.fragment(answer, "task: not registered") == '{"task": "x"}'
    assert structured.fragment(answer, "phases: too many") is None
    assert structured.fragment(answer, "the answer holds no JSON object") is None


@pytest.mark.skipif(
    REAL_URL is None, reason="set RESEARCH_LOOP_TEST_LLM_URL to a real OpenAI-compatible server"
)
def test_a_real_local_model_plans_one_idea() -> None:
    """The smallest real-model check: one idea planned by the model at RESEARCH_LOOP_TEST_LLM_URL
    (RESEARCH_LOOP_TEST_LLM_MODEL, default qwen2.5-coder-1.5b), with minutes allowed for a CPU."""
    real = Settings(llm=f"openai-compatible:{REAL_MODEL}", base_url=REAL_URL, llm_timeout_s=900)
    plan = planner.make_plan(IDEA, real)
    assert plan.planner == real.llm and plan.task == "digits-cnn"
    assert plan.usage.calls >= 1 and plan.usage.input_tokens > 0
