"""The analysis stage: what the stored trials say, in numbers and findings.

- `analyst`: findings from a study (importances, edges, pruning bias)
- `ablation`: which of a change's parts carries its effect
- `comparisons`: paired comparisons with Holm's correction across arms
- `evidence`: which of the candidate's changes the final patch carries, and under which conditions
- `verdict`: the words a comparison earns (improved, no detectable effect, worse, not measurable)
"""

__all__ = ["ablation", "analyst", "comparisons", "evidence", "verdict"]
