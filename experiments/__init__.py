"""What runs: tasks, data, and the Optuna runner.

A plain script hands its metric to research-loop with one line, `report_metrics(accuracy=0.93)` after
`from experiments import report_metrics` (`step=epoch` for a per-epoch value, which feeds the pruner).
"""

from experiments.channels import report_metrics

__all__ = ["report_metrics"]
