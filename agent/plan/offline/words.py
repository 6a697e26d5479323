"""The words the offline planner reads an idea with: the terms that name hyperparameters, model families,
samplers, pruners, compressions, data set sizes and metrics, and the conditions no task can honour yet.

Kept apart from the priors (agent/plan/offline/priors.py) so the vocabulary can grow without touching a single
range, and a reviewer can read every phrase the rules match in one place.
"""

from __future__ import annotations

from agent.schemas import PrunerName, SamplerName

# Phrases that name a hyperparameter (canonical names). Matched as whole words, plurals included.
PARAM_TERMS: dict[str, tuple[str, ...]] = {
    "learning_rate": ("learning rate", "lr", "step size"),
    "weight_decay": ("weight decay", "l2 penalty", "l2 regularization"),
    "dropout": ("dropout",),
    "epochs": ("epoch", "training length"),
    "batch_size": ("batch size",),
    "optimizer": ("optimizer", "adam", "adamw", "sgd", "momentum"),
    "lr_schedule": ("schedule", "scheduler", "cosine", "warmup", "annealing"),
    "hidden_size": ("hidden size", "hidden units", "width"),
    "layers": ("depth", "number of layers"),
    "channels": ("channel", "filter"),
    "embedding_dim": ("embedding size", "embedding dimension"),
    "clip": ("gradient clipping", "clipping"),
    "label_smoothing": ("label smoothing",),
    "activation": ("activation", "activation function", "gelu", "silu", "swish"),
    "patience": ("early stopping", "patience"),
    "n_estimators": ("number of trees", "more trees", "trees", "estimators", "ensemble size"),
    "max_depth": ("max depth", "maximum depth", "tree depth", "deeper trees"),
    "C": ("regularization strength", "svm c", "inverse regularization"),
}

# Words that point at a model family when the idea names no registered task.
FAMILY_TERMS: dict[str, tuple[str, ...]] = {
    "cnn": ("image", "vision", "picture", "photo", "pixel", "convolution", "convolutional", "cnn", "resnet"),
    "transformer": ("text", "language", "nlp", "bert", "transformer", "token", "fine tuning", "finetuning"),
    "mlp": ("tabular", "table", "mlp", "perceptron", "feature", "dense"),
    "lstm": ("sequence", "lstm", "recurrent", "rnn", "gru", "sentiment"),
}

# Search strategies an idea can name, in the order they are listed in a plan.
SAMPLER_TERMS: tuple[tuple[tuple[str, ...], tuple[SamplerName, ...]], ...] = (
    (("bayesian", "bayes", "surrogate", "model based", "sequential model based", "smbo"), ("tpe", "gp")),
    (("tpe", "tree structured parzen", "parzen", "hyperopt"), ("tpe",)),
    (("gp", "gaussian process", "kriging"), ("gp",)),
    (("grid", "exhaustive"), ("grid",)),
    (("cma", "cmaes", "cma es", "evolution strategy", "evolutionary"), ("cmaes",)),
    (("qmc", "quasi random", "sobol", "low discrepancy"), ("qmc",)),
    (("random search", "random sampling", "random sampler"), ("random",)),
)

# Pruners an idea can name; first match wins.
# Early stopping is a code change (training stops itself), asked for instead of pruning slow learners.
PRUNER_TERMS: tuple[tuple[tuple[str, ...], PrunerName], ...] = (
    (
        (
            "no pruning",
            "without pruning",
            "instead of pruning",
            "rather than pruning",
            "no early stopping",
            "without early stopping",
            "early stopping",
        ),
        "none",
    ),
    (("hyperband", "successive halving", "asha"), "hyperband"),
    (("pruning", "prune", "pruner", "median stopping"), "median"),
)

# Words that ask for a frugal plan: fewer trials, fewer dimensions, a cheap exploration phase.
LOW_RESOURCE_TERMS: tuple[str, ...] = (
    "low resource",
    "resource constrained",
    "efficient",
    "cheap",
    "frugal",
    "limited compute",
    "limited budget",
    "small budget",
    "few trials",
    "fast",
    "quick",
    "laptop",
    "cpu only",
)
COMPRESSION_TERMS: tuple[str, ...] = (
    "compression",
    "compress",
    "compressed",
    "smaller model",
    "model size",
    "capacity",
)
# Words that ask for the compressed model to be judged (an evaluation transform, agent/plan/offline/compression.py):
# quantization always; pruning only as magnitude / weight pruning, sparsity, or pruning with a compression word
# (plain "pruning" in a tuning idea means stopping weak trials).
QUANTIZATION_TERMS: tuple[str, ...] = ("quantization", "quantisation", "quantized", "quantised", "int8")
WEIGHT_PRUNING_TERMS: tuple[str, ...] = (
    "sparsity",
    "sparse",
    "magnitude pruning",
    "weight pruning",
    "pruned weights",
    "prune weights",
    "prune the weights",
)
PRUNING_TERMS: tuple[str, ...] = ("pruning", "pruned", "prune")
# Nouns that name a setting only beside a number ("2 vs 4 layers", "64 hidden units"): read by the levels rule
# (agent/plan/offline/levels.py) but not elsewhere, where "a dropout layer" is no question about depth.
LEVEL_TERMS: dict[str, tuple[str, ...]] = {
    "layers": ("layer",),
    "hidden_size": ("unit", "neuron", "hidden unit"),
    "channels": ("filter", "channel"),
    "batch_size": ("batch",),
    "epochs": ("epoch",),
}
# Words that, beside magnitude pruning, ask for a fine-tuning epoch after it (Compression.finetune_epochs).
FINETUNE_TERMS: tuple[str, ...] = (
    "fine tune",
    "fine tuning",
    "finetune",
    "finetuning",
    "retrain",
    "retraining",
)
# Words that, beside a compression transform, ask for the metric against the compressed model's size: a
# multi-objective study and its Pareto front (Compression.objective = "multi").
TRADE_OFF_TERMS: tuple[str, ...] = (
    "pareto",
    "trade off",
    "tradeoff",
    "accuracy vs size",
    "accuracy versus size",
    "accuracy against size",
    "size vs accuracy",
    "size versus accuracy",
    "smallest model",
    "smallest network",
)

# An idea must use at least one of these (or a registered task's words) to be read as an ML experiment.
ML_TERMS: tuple[str, ...] = (
    "hyperparameter",
    "hyper parameter",
    "tune",
    "tuning",
    "optimization",
    "optimisation",
    "optimize",
    "optimise",
    "train",
    "training",
    "model",
    "neural",
    "network",
    "machine learning",
    "deep learning",
    "classifier",
    "classification",
    "regression",
    "accuracy",
    "loss",
    "dataset",
    "data set",
    "benchmark",
    "baseline",
    "overfitting",
    "generalization",
    "generalisation",
    "regularization",
    "regularisation",
    "search space",
    "sampler",
    "fine tune",
    "bayesian",
    "surrogate",
    "optuna",
    "cnn",
    "convolutional",
    "mlp",
    "perceptron",
    "lstm",
    "rnn",
    "gru",
    "bert",
    "transformer",
    "resnet",
)

# Words that make an idea a question about its techniques rather than a request to tune them.
COMPARISON_TERMS: tuple[str, ...] = (
    "versus",
    "vs",
    "or",
    "compare",
    "compared",
    "comparing",
    "comparison",
    "help",
    "helps",
    "without",
    "better",
    "worse",
    "improve",
    "hurt",
    "effect",
    "benefit",
    "matter",
    "against",
    "ablation",
    "ablate",
)

# The words that name a cap on the training split ("300 training images").
TRAIN_CAP_NOUNS: tuple[str, ...] = (
    "image",
    "images",
    "example",
    "examples",
    "sample",
    "samples",
    "sentence",
    "sentences",
    "review",
    "reviews",
    "row",
    "rows",
    "label",
    "labels",
    "labelled examples",
    "labeled examples",
    "point",
    "points",
    "digit",
    "digits",
    "instance",
    "instances",
)

# Metrics an idea can name, and the key each task's scripts record it under (if any).
METRIC_TERMS: dict[str, tuple[str, ...]] = {
    "accuracy": ("accuracy", "error rate"),
    "f1_macro": ("f1", "f1 score", "macro f1", "f measure"),
    "loss": ("loss", "cross entropy", "log loss", "nll"),
    "top5_accuracy": ("top 5", "top5"),
    "auc": ("auc", "roc auc", "auroc"),
    "calibration": ("calibration", "ece", "expected calibration error"),
    "throughput": ("throughput",),
}

# Objectives beside the metric (SecondaryObjective.name): measured for every final run and compared per arm.
SECONDARY_TERMS: dict[str, tuple[str, ...]] = {
    "latency_ms": (
        "latency",
        "inference time",
        "inference speed",
        "faster inference",
        "prediction time",
        "faster predictions",
    ),
    "train_time_s": (
        "training time",
        "train time",
        "time to train",
        "wall time",
        "wall clock",
        "faster",
        "speed up",
        "speeds up",
        "save time",
        "saves time",
        "saving time",
        "cheaper",
        "quicker",
        "less time",
        "compute time",
    ),
    "epochs_run": ("epochs run", "fewer epochs", "epochs actually run", "stop earlier", "stops earlier"),
    "size_bytes": ("smaller", "model size", "size in bytes", "memory footprint", "footprint", "lighter"),
}
# Words that ask for no loss on the metric: a non-inferiority test (its margin stated, or the noise floor).
NON_INFERIORITY_TERMS: tuple[str, ...] = (
    "without losing accuracy",
    "without hurting accuracy",
    "without hurting",
    "without a loss of accuracy",
    "without loss of accuracy",
    "without sacrificing accuracy",
    "without losing",
    "no worse than",
    "not worse than",
    "keep accuracy",
    "keeps accuracy",
    "keeping accuracy",
    "keep its accuracy",
    "keeps its accuracy",
    "keep the accuracy",
    "keeps the accuracy",
    "maintain accuracy",
    "retain accuracy",
    "retains accuracy",
    "stay accurate",
    "stays accurate",
    "as accurate as",
    "as good as",
)
# Words that ask whether two conditions are the same: an equivalence test (two one-sided tests).
EQUIVALENCE_TERMS: tuple[str, ...] = (
    "the same as",
    "same accuracy",
    "equivalent",
    "equally good",
    "just as good",
    "indistinguishable",
)
# Words that pit two treatments against each other ("X or Y", "X better than Y"): compared head to head.
HEAD_TO_HEAD_TERMS: tuple[str, ...] = (
    "or",
    "versus",
    "vs",
    "better than",
    "worse than",
    "against",
    "compared to",
    "compared with",
    "rather than",
    "instead of",
    "beat",
    "beats",
)
# Words that ask for a setting moved one way from the script's current value ("a lower learning rate").
# "more trees" stays a tuning of the trees (PARAM_TERMS), as before.
DIRECTION_TERMS: dict[str, tuple[str, ...]] = {"lower": ("lower",), "higher": ("higher",)}

# Words that carry no condition of their own: a clause made only of these and unknown words is "not
# understood", one made only of these is the question's form (agent/plan/coverage.py).
_FILLER = (
    "a an the of on in at to for from by with without and or but if is are be been was were it its this that",
    "these those does do did can could should would will shall may might must than then so as also only just",
    "very more most less much many few some any each every all both which what how whether when while where",
    "who whom we i you they he she my our your their me us them help helps helped good bad better best worse",
    "worst try trying tried use using used run running give gives make makes get gets small smaller large big",
    "tiny simple plain our new same other another one two three four five six seven eight nine ten first second",
    "set sets setting budget data task tasks idea question please check see say whatever available only",
    "budget compared versus vs over under up down out about into onto per than rather instead really there",
    "here now still even case cases s t il le la les des du un une de et est pour dans sur au aux der die das",
    "dem den des ein eine einem einen einer und ist fur auf im zu von el los las una unos para por y es al",
    "del que",
)
FILLER_WORDS: frozenset[str] = frozenset(w for line in _FILLER for w in line.split())

# Conditions no task can honour yet: the words, and why (what would make it possible).
UNSUPPORTED: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("robustness", "robust"),
        "robustness is judged here only as held-out accuracy on clean data, over seeds; no corrupted, "
        "shifted or adversarial test set is built in",
        "add a held-out split with the corruption you care about to the script and report its metric",
    ),
    (
        ("batch norm", "batchnorm", "batch normalization", "batch normalisation", "layer norm"),
        "no code change adds a normalisation layer yet",
        "add the layer to the script with a hyperparameter that switches it, then compare arms on it",
    ),
    (
        ("leaky relu", "tanh", "mish", "elu"),
        "change_activation offers ReLU, GELU and SiLU only",
        "expose the activation as a hyperparameter in the script's block",
    ),
    (
        ("mixup", "cutmix", "cutout"),
        "no code change adds mixing augmentations yet",
        "add the augmentation to the script behind a hyperparameter",
    ),
    (
        ("knowledge distillation", "distillation", "distil"),
        "distillation needs a teacher model, which no task provides",
        "train a teacher in the script and expose the distillation weight as a hyperparameter",
    ),
)
