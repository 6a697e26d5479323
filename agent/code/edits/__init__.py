"""The deterministic code changes, one module per family of edits.

- `base`: the edit registry and the hyperparameter edits every script takes
- `model`: architecture edits (width, depth, dropout layers)
- `training`: training-loop edits (weight decay, early stopping, label smoothing, limits)
- `activation`: activation-function swaps
- `plain`: the edits a plain script takes, each new value exposed as a flag or a constant like its others
- `sites`: the places several edits attach to (layer lists and attributes, the optimizer, the epoch loop)
"""

__all__ = ["activation", "base", "model", "plain", "sites", "training"]
