"""The offline planner: deterministic rules over the idea's words, no model and no network.

- `planner`: the idea's words to a plan
- `arms`: the arms an idea asks for ("with/without", "A versus B")
- `compression`: the evaluation transform an idea asks for (int8, pruning)
- `levels`: the values an idea names for one setting ("32 vs 128", "a lower learning rate") as arms
- `objectives`: a second objective, a margin and head-to-head pairs the idea asks for
- `meaning`: paraphrases and non-English phrasings rewritten into the vocabulary's words
- `priors`: written-down ranges per model family, the techniques and data sets an idea can compare
- `words`: the vocabulary the rules read an idea with
"""

__all__ = ["arms", "compression", "levels", "meaning", "objectives", "planner", "priors", "words"]
