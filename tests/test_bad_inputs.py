"""Every case of the bad-input corpus (tests/data/bad_inputs/cases.json) ends in its expected clear outcome:
the exit code, one `error:` line naming the problem, no traceback, no secret echoed, no file changed outside
the run folder."""

from __future__ import annotations

import bad_inputs
import pytest

CASES = bad_inputs.load()


def test_the_corpus_covers_every_category_with_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.category for c in CASES} >= {
        "idea", "llm answer", "search space", "patch", "unknown name", "storage", "script", "run folder"
    }  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_handled(case, tmp_path):
    outcome = bad_inputs.play(case, tmp_path / "sandbox")
    assert outcome.problems() == []
