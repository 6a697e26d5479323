"""The plan stage: an idea in, an `ExperimentPlan` out.

- `planner`: picks the planner (offline rules or a language model) and validates what it drafts
- `llm`: the provider registry and the structured calls to a language model
- `rules`: the checks every plan passes, whoever drafted it
- `offline`: the deterministic planner that reads the idea's words, with its priors
"""

__all__ = ["llm", "offline", "planner", "rules"]
