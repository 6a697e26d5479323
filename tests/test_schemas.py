import pytest
from pydantic import ValidationError

from experiments.records import SearchParam


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "float", "low": 1.0, "high": 0.1}, "greater than high"),
        ({"kind": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"kind": "categorical", "choices": []}, "at least one choice"),
        ({"kind": "int", "low": 1.5, "high": 4}, "whole numbers"),
        ({"kind": "float", "low": 0.1}, "needs both low and high"),
        ({"kind": "float", "low": 0.0, "high": float("inf")}, "finite"),
        ({"kind": "categorical", "choices": [1, 1]}, "duplicate"),
        ({"kind": "float", "low": 0.1, "high": 1.0, "step": -1}, "step"),
    ],
)
def test_invalid_ranges_are_rejected_naming_the_field(fields, message):
    with pytest.raises(ValidationError) as info:
        SearchParam(name="lr", **fields)
    assert message in str(info.value)
    assert "search_space[lr]" in str(info.value)


def test_contains_checks_kind_and_range():
    lr = SearchParam(name="lr", kind="float", low=1e-4, high=1e-2, log=True)
    assert lr.contains(1e-3) and not lr.contains(0.1) and not lr.contains("x")
    opt = SearchParam(name="opt", kind="categorical", choices=["adam", "sgd"])
    assert opt.contains("sgd") and not opt.contains("rmsprop")
