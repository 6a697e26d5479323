"""The plan stage: an idea in, an `ExperimentPlan` out.

- `planner`: picks the planner (offline rules or a language model) and validates what it drafts
- `llm`: the provider registry: the `llm` setting, the connection to its model, list prices
- `structured`: the structured call to a connected model (`ask`), with its text fallback and repairs
- `rules`: the checks every plan passes, whoever drafted it
- `offline`: the deterministic planner that reads the idea's words, with its priors
"""

__all__ = ["llm", "offline", "planner", "rules", "structured"]
