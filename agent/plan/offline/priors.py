"""The written-down knowledge the offline planner plans with: search-space priors per model family, the
techniques and data sets an idea can compare, and the budget rules of thumb.

Kept as data in one place so a reviewer can check every range against practice, and so the planner's code
holds rules, not numbers. Ranges follow common practice in the literature and library defaults:
transformer fine-tuning from the BERT paper's recommended grid (Devlin et al. 2019, appendix A.3), CNN and
MLP ranges from the usual Adam/AdamW working ranges for small networks, LSTM ranges from text-classification
practice (hidden 64-256, gradient clipping 0.5-5). The words an idea is read with are in words.py.
"""

from __future__ import annotations

from typing import NamedTuple

from agent.schemas import CodeChangeKind, PrunerName, SamplerName
from experiments.records import SearchParam


def _float(name: str, low: float, high: float, log: bool = False) -> SearchParam:
    return SearchParam(name=name, kind="float", low=low, high=high, log=log)


def _int(name: str, low: int, high: int, step: int | None = None) -> SearchParam:
    return SearchParam(name=name, kind="int", low=low, high=high, step=step)


def _cat(name: str, *choices: bool | int | float | str) -> SearchParam:
    return SearchParam(name=name, kind="categorical", choices=list(choices))


# Priors by model family, keyed by canonical hyperparameter name (see ALIASES for other spellings).
def holds(param: SearchParam, default: object) -> bool:
    """Whether a written-down log range covers the script's default: a learning rate of 1.0 (Adadelta) or 20
    (an LSTM with plain SGD) is outside 1e-4..1e-2 by orders of magnitude, so the range around the default
    serves it instead. A default of 0 (weight decay off) is no scale to keep, so any range serves it."""
    if not param.log or not isinstance(default, int | float) or isinstance(default, bool) or default <= 0:
        return True
    return param.low is not None and param.high is not None and param.low <= default <= param.high


FAMILY_PRIORS: dict[str, dict[str, SearchParam]] = {
    "transformer": {
        p.name: p
        for p in [
            _float("learning_rate", 1e-5, 5e-5, log=True),
            _cat("batch_size", 16, 32),
            _int("epochs", 2, 4),
            _float("dropout", 0.1, 0.5),
            _float("weight_decay", 0.0, 0.1),
            _float("warmup_ratio", 0.0, 0.1),
        ]
    },
    "cnn": {
        p.name: p
        for p in [
            _float("learning_rate", 1e-4, 1e-2, log=True),
            _float("weight_decay", 1e-5, 1e-3, log=True),
            _float("dropout", 0.0, 0.5),
            _cat("batch_size", 32, 64, 128),
            _int("epochs", 2, 10),
            _cat("channels", 8, 16, 32),
            _cat("optimizer", "adam", "sgd"),
        ]
    },
    "mlp": {
        p.name: p
        for p in [
            _float("learning_rate", 1e-4, 1e-1, log=True),
            _float("weight_decay", 1e-6, 1e-2, log=True),
            _float("dropout", 0.0, 0.5),
            _int("hidden_size", 16, 256, step=16),
            _int("layers", 1, 3),
            _cat("batch_size", 16, 32, 64),
            _int("epochs", 5, 30),
        ]
    },
    "lstm": {
        p.name: p
        for p in [
            _float("learning_rate", 1e-4, 1e-2, log=True),
            _int("hidden_size", 64, 256, step=32),
            _int("layers", 1, 2),
            _float("dropout", 0.0, 0.5),
            _cat("embedding_dim", 50, 100, 200),
            _cat("batch_size", 32, 64),
            _int("epochs", 2, 10),
            _float("clip", 0.5, 5.0, log=True),
        ]
    },
}

# Other names for a family, as task definitions may spell it.
FAMILY_ALIASES: dict[str, str] = {"bert": "transformer", "rnn": "lstm", "gru": "lstm", "convnet": "cnn"}

# Priors that hold for any family, used where the family table has no entry for a hyperparameter.
GENERIC_PRIORS: dict[str, SearchParam] = {
    p.name: p
    for p in [
        _float("learning_rate", 1e-4, 1e-1, log=True),
        _float("weight_decay", 1e-6, 1e-2, log=True),
        _float("dropout", 0.0, 0.5),
        _cat("batch_size", 16, 32, 64, 128),
        _cat("optimizer", "adam", "sgd"),
        _cat("lr_schedule", "constant", "cosine"),
        _float("momentum", 0.8, 0.99),
        _float("label_smoothing", 0.0, 0.2),
        _cat("activation", "relu", "gelu", "silu"),
        _int("patience", 1, 5),
        # tree ensembles and SVMs (scikit-learn's names), as in Optuna's own scikit-learn examples
        SearchParam(name="n_estimators", kind="int", low=10, high=300, log=True),
        SearchParam(name="max_depth", kind="int", low=2, high=32, log=True),
        _float("C", 1e-3, 1e3, log=True),
    ]
}

# Script spellings of canonical hyperparameter names.
ALIASES: dict[str, str] = {
    "lr": "learning_rate",
    "wd": "weight_decay",
    "num_epochs": "epochs",
    "n_epochs": "epochs",
    "hidden": "hidden_size",
    "hidden_dim": "hidden_size",
    "hidden_units": "hidden_size",
    "num_layers": "layers",
    "n_layers": "layers",
    "embed_dim": "embedding_dim",
    "dropout_rate": "dropout",
    "hidden_dropout": "dropout",
    "attention_dropout": "dropout",
    "attn_dropout": "dropout",
    "classifier_dropout": "dropout",
    "grad_clip": "clip",
    "max_grad_norm": "clip",
    "scheduler": "lr_schedule",
    "warmup": "warmup_ratio",
    # Hugging Face TrainingArguments and scikit-learn spellings
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "learning_rate_init": "learning_rate",
}

# The order in which hyperparameters usually matter (learning rate first); a small budget searches the head.
IMPORTANCE: tuple[str, ...] = (
    "learning_rate",
    "weight_decay",
    "dropout",
    "batch_size",
    "epochs",
    "optimizer",
    "hidden_size",
    "channels",
    "layers",
    "embedding_dim",
    "warmup_ratio",
    "clip",
    "lr_schedule",
    "momentum",
    "label_smoothing",
    "activation",
    "patience",
    "n_estimators",
    "max_depth",
    "C",
)

# Hyperparameters that size the model: what an idea about compression or capacity is about.
CAPACITY: tuple[str, ...] = ("channels", "hidden_size", "layers", "embedding_dim")

# Hyperparameters a code change can add to a script that lacks them, and the change that adds each.
ADDABLE: dict[str, CodeChangeKind] = {
    "dropout": "add_dropout",
    "optimizer": "change_optimizer",
    "lr_schedule": "change_schedule",
    "label_smoothing": "add_label_smoothing",
    "weight_decay": "add_weight_decay",
    "activation": "change_activation",
    "patience": "early_stopping",
}

# The sampler and pruner a plan uses when the idea names none (the sampler measured in
# bench/results/efficiency.md). Random search is added as the reference every other sampler is compared against.
DEFAULT_SAMPLERS: tuple[SamplerName, ...] = ("default",)
REFERENCE_SAMPLER: SamplerName = "random"
DEFAULT_PRUNER: PrunerName = "median"

# Budget rules of thumb: trials per sampler, dimensions searched, and the exploration phase's share.
DEFAULT_TRIALS = 30
LOW_RESOURCE_TRIALS = 15
DEFAULT_DIMS = 5
LOW_RESOURCE_DIMS = 3
DEFAULT_SEEDS = 3
EXPLORE_FRACTION = 0.25
EXPLORE_SHARE = 0.4
MIN_TRIALS_FOR_EXPLORE = 5


# --- controlled comparisons: the techniques an idea can ask about, and the settings it can name ---


class Technique(NamedTuple):
    """A thing an idea can ask "does it help?" or "this or that?" about, as the hyperparameter that sets it.

    A toggle (`value` None) is on or off: off fixes `param` to `off`, on searches it in `on`. A choice fixes
    `param` to `value`; two choices of one parameter are the arms of an "A or B" question.
    """

    name: str
    terms: tuple[str, ...]
    param: str
    value: bool | int | float | str | None = None
    off: bool | int | float | str | None = None
    on: SearchParam | None = None


TECHNIQUES: tuple[Technique, ...] = (
    Technique("dropout", ("dropout",), "dropout", off=0.0, on=_float("dropout", 0.05, 0.5)),
    Technique(
        "label smoothing",
        ("label smoothing", "smoothed labels"),
        "label_smoothing",
        off=0.0,
        on=_float("label_smoothing", 0.05, 0.2),
    ),
    Technique(
        "weight decay",
        ("weight decay", "l2 regularization", "l2 regularisation", "l2 penalty"),
        "weight_decay",
        off=0.0,
        on=_float("weight_decay", 1e-5, 1e-2, log=True),
    ),
    Technique(
        "data augmentation",
        ("augmentation", "data augmentation", "augmented"),
        "augmentation",
        off="none",
        on=_cat("augmentation", "crop", "crop_flip"),
    ),
    Technique("AdamW", ("adamw",), "optimizer", value="adamw"),
    Technique("Adam", ("adam",), "optimizer", value="adam"),
    Technique(
        "SGD with momentum",
        ("sgd", "stochastic gradient descent", "sgd with momentum", "momentum sgd"),
        "optimizer",
        value="sgd",
    ),
    Technique(
        "cosine decay",
        ("cosine", "cosine decay", "cosine annealing", "cosine schedule"),
        "lr_schedule",
        value="cosine",
    ),
    Technique(
        "a constant rate",
        ("constant rate", "constant learning rate", "constant lr", "constant schedule", "no schedule"),
        "lr_schedule",
        value="constant",
    ),
    Technique("step decay", ("step decay", "step schedule"), "lr_schedule", value="step"),
    Technique("linear warmup", ("linear warmup", "warmup schedule"), "lr_schedule", value="linear_warmup"),
    Technique("GELU", ("gelu",), "activation", value="gelu"),
    Technique("SiLU", ("silu", "swish"), "activation", value="silu"),
    Technique("ReLU", ("relu",), "activation", value="relu"),
    Technique("early stopping", ("early stopping",), "patience", off=0, on=_int("patience", 1, 5)),
)


# hyperparameters a technique's words already set apart (an idea's "momentum" is SGD's, not a range to tune)
TECHNIQUE_PARAMS: frozenset[str] = frozenset({"momentum", "augmentation", "max_train_examples"})


class DataSet(NamedTuple):
    """A data set an idea can name: the block value that selects it, per task, and whether it ships offline."""

    name: str
    terms: tuple[str, ...]
    values: dict[str, str]
    offline: bool


DATASETS: tuple[DataSet, ...] = (
    DataSet("wine", ("wine",), {"tabular-mlp": "wine"}, True),
    DataSet("iris", ("iris",), {"tabular-mlp": "iris"}, True),
    DataSet("breast cancer", ("breast cancer", "wisconsin"), {"tabular-mlp": "breast_cancer"}, True),
    DataSet(
        "rotten tomatoes",
        ("rotten tomatoes",),
        {"text-classification": "rotten_tomatoes_offline", "lstm-sentiment": "rotten_tomatoes_offline"},
        True,
    ),
    DataSet("CIFAR-10", ("cifar10", "cifar 10"), {"image-classification": "cifar10"}, False),
    DataSet("CIFAR-100", ("cifar100", "cifar 100"), {"image-classification": "cifar100"}, False),
    DataSet("IMDB", ("imdb",), {"text-classification": "imdb", "lstm-sentiment": "imdb"}, False),
    DataSet(
        "SST-2", ("sst2", "sst 2"), {"text-classification": "glue/sst2", "lstm-sentiment": "glue/sst2"}, False
    ),
    DataSet(
        "AG News",
        ("ag news", "agnews"),
        {"text-classification": "ag_news", "lstm-sentiment": "ag_news"},
        False,
    ),
    DataSet("MRPC", ("mrpc",), {"text-classification": "glue/mrpc"}, False),
    DataSet("MNIST", ("mnist",), {}, False),
    DataSet("Fashion-MNIST", ("fashion mnist", "fashionmnist"), {}, False),
)

# The hyperparameter that caps the training split.
TRAIN_CAP_PARAM = "max_train_examples"
