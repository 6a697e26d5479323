"""The analysis stage: what the stored trials say, in numbers and findings.

- `analyst`: findings from a study (importances, edges, pruning bias)
- `ablation`: which of a change's parts carries its effect
- `comparisons`: paired comparisons with Holm's correction across arms and head-to-head pairs
- `evidence`: which of the candidate's changes the final patch carries, and under which conditions
- `margins`: non-inferiority and equivalence within the margin an idea states
- `secondary`: the secondary objectives (time, epochs, size, latency) compared per pair of arms
- `verdict`: the words a comparison earns (improved, no detectable effect, worse, not measurable), and the
  difference a run could have detected
"""

__all__ = ["ablation", "analyst", "comparisons", "evidence", "margins", "secondary", "verdict"]
