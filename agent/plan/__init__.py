"""The plan stage: an idea in, an `ExperimentPlan` out.

- `planner`: picks the planner (offline rules or a language model) and validates what it drafts
- `draft`: the compact plan a model writes, mended and expanded into a whole plan
- `llm`: the provider registry: the `llm` setting, the connection to its model, list prices
- `structured`: the structured call to a connected model (`ask`): response formats, tools, text, repairs
- `failures`: what a failed call to a model means, in one line that names the fix
- `serving`: what a self-hosted server reports (its context window), and prompt-size estimates
- `rules`: the checks every plan passes, whoever drafted it
- `coverage`: the idea split into its parts, each honoured by a plan field or listed under Not done
- `vocabulary`: the phrases the rules know, each with the plan field that honours it
- `offline`: the deterministic planner that reads the idea's words, with its priors
"""

__all__ = [
    "coverage",
    "draft",
    "failures",
    "llm",
    "offline",
    "planner",
    "rules",
    "serving",
    "structured",
    "vocabulary",
]
