"""The review stage: a person reads the report and decides; only approve touches their code.

- `review`: approve (git apply and commit) and reject, with the decisions ledger
- `history`: the runs list of `research-loop list`, with each run's decision
- `web`: the local review server
- `pages`: its pages
- `mlflow`: export of a run to MLflow's file store
- `dashboards`: links to Optuna Dashboard and TensorBoard
- `measured`: the patch approve may write, rebuilt from what the run measured
"""

__all__ = ["dashboards", "history", "measured", "mlflow", "pages", "review", "web"]
