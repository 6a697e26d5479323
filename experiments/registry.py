"""The task registry: which training scripts research-loop can tune, on what data, judged by which metric.

A task's metric direction lives here, never in model output: a plan or an LLM answer cannot flip it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from experiments import command, entry, project, space
from experiments.channels import metric_pattern
from experiments.hyperparameters import Discovery
from experiments.program import discovered, is_program
from experiments.records import Direction, Metric, SearchParam
from experiments.script_facts import metric_name

TASKS_DIR = Path(__file__).parent / "tasks"


class UnknownTask(KeyError):
    def __str__(self) -> str:
        return f"unknown task {self.args[0]!r}; known tasks: {', '.join(names())}"


class Task(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    script: Path
    data: str
    model: str
    family: str
    metric: Metric
    search_space: list[SearchParam]
    keywords: tuple[str, ...] = ()
    curated: bool = Field(
        default=True,
        description="the search ranges were chosen for this script; a plain script's are guessed from its "
        "defaults, so a planner's written-down priors come first there",
    )
    fractional: bool = Field(
        default=True, description="the script trains on a share of its data when asked (data_fraction)"
    )
    script_args: tuple[str, ...] = Field(
        default=(), description="a plain script's own command-line arguments, given on every run"
    )
    metric_regex: str | None = Field(
        default=None, description="--metric-regex: how a plain script's output gives its metric, when given"
    )
    fixed: dict[str, Any] = Field(default_factory=dict, description="what --command sets: never searched")
    project: Path | None = Field(default=None, description="the repository whose copy trials run in")

    @property
    def defaults(self) -> dict[str, Any]:
        """The script's hyperparameters and their defaults (its block's, or those found in a plain script): the
        baseline's hyperparameters.

        Read afresh each time (a parse of one small file), so a copied or re-pointed task can never answer with
        another script's values."""
        return entry.defaults(self.script.read_text(), str(self.script))

    @property
    def entry(self) -> str:
        """Where the script lies in a run's workspace: in the copy of its project, else alone."""
        return self.script.relative_to(self.project).as_posix() if self.project else self.script.name

    @property
    def files(self) -> list[Path]:
        """The files a patch may touch."""
        return [self.script]


def _float(name: str, low: float, high: float, log: bool = False) -> SearchParam:
    return SearchParam(name=name, kind="float", low=low, high=high, log=log)


def _int(name: str, low: int, high: int, step: int | None = None) -> SearchParam:
    return SearchParam(name=name, kind="int", low=low, high=high, step=step)


def _cat(name: str, *choices: Any) -> SearchParam:
    return SearchParam(name=name, kind="categorical", choices=list(choices))


_ACCURACY = Metric(name="accuracy", direction="maximize")

# The metrics a plain script may report, each with the direction that is better, in the order one is preferred
# when a script reports several: it is judged by the first of these it reports (accuracy when it reports none).
METRIC_DIRECTIONS: dict[str, Direction] = {
    **dict.fromkeys(
        ("accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_micro", "roc_auc", "matthews_correlation"),
        "maximize",
    ),
    **dict.fromkeys(("precision", "recall", "r2", "top5_accuracy"), "maximize"),
    **dict.fromkeys(("loss", "error", "log_loss", "nll", "perplexity", "mse", "rmse", "mae"), "minimize"),
}

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            name="digits-cnn",
            description="small CNN on scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes)",
            script=TASKS_DIR / "digits_cnn.py",
            data="sklearn digits (bundled, offline)",
            model="2-layer CNN",
            family="cnn",
            metric=_ACCURACY,
            search_space=[
                _float("learning_rate", 1e-4, 1e-2, log=True),
                _float("weight_decay", 1e-5, 1e-3, log=True),
                _float("dropout", 0.0, 0.5),
                _int("epochs", 2, 10),
                _cat("batch_size", 32, 64, 128),
            ],
            keywords=("digit", "digits", "mnist", "handwritten", "image", "cnn", "convolution", "vision"),
        ),
        Task(
            name="tabular-mlp",
            description=(
                "MLP on a scikit-learn table (default: breast cancer, 569 rows, 30 features, 2 classes; "
                "also wine, iris or the digits' 64 pixels)"
            ),
            script=TASKS_DIR / "tabular_mlp.py",
            data="sklearn breast cancer (bundled, offline); wine, iris or digits tables",
            model="MLP",
            family="mlp",
            metric=_ACCURACY,
            search_space=[
                _float("learning_rate", 1e-4, 1e-1, log=True),
                _float("weight_decay", 1e-6, 1e-2, log=True),
                _float("dropout", 0.0, 0.5),
                _int("hidden_size", 8, 128, step=8),
                _int("layers", 1, 3),
                _int("epochs", 5, 30),
            ],
            keywords=(
                "tabular",
                "table",
                "mlp",
                "breast",
                "cancer",
                "breast cancer",
                "medical",
                "feature",
                "wine",
                "iris",
            ),
        ),
        Task(
            name="text-classification",
            description=(
                "fine-tune a pretrained transformer encoder (offline: MiniLM-L6, 22.7M parameters) to classify "
                "sentences (offline: Rotten Tomatoes critics' sentences, fresh or rotten)"
            ),
            script=TASKS_DIR / "text_classification.py",
            data="Rotten Tomatoes sentences (offline); glue/sst2, glue/mrpc, ag_news, imdb or local files",
            model="MiniLM-L6 (offline); bert-base-uncased, distilbert-base-uncased or a local model",
            family="transformer",
            metric=_ACCURACY,
            search_space=[
                _float("learning_rate", 2e-5, 5e-4, log=True),
                _float("weight_decay", 0.0, 0.1),
                _float("warmup_ratio", 0.0, 0.3),
                _float("hidden_dropout", 0.0, 0.3),
                _float("attention_dropout", 0.0, 0.3),
                _cat("batch_size", 8, 16, 32),
                _int("epochs", 1, 3),
                _cat("max_seq_length", 32, 48, 64),
            ],
            keywords=(
                "bert",
                "distilbert",
                "minilm",
                "transformer",
                "fine-tune",
                "finetune",
                "pretrained",
                "glue",
                "sst2",
                "sst-2",
                "mrpc",
                "paraphrase",
                "ag_news",
                "news",
                "imdb",
                "sentiment",
                "review",
                "movie",
                "text",
                "sentence",
                "nlp",
            ),
        ),
        Task(
            name="image-classification",
            description=(
                "ResNet-18 trained from scratch on images (offline: scikit-learn's digits upsampled to 16x16, "
                "a quarter-width network)"
            ),
            script=TASKS_DIR / "image_classification.py",
            data="sklearn digits at 16x16 (offline); cifar10 or a local folder of class subfolders",
            model="ResNet-18 (CIFAR form, width set by `width`)",
            family="cnn",
            metric=_ACCURACY,
            search_space=[
                _float("learning_rate", 1e-3, 0.2, log=True),
                _float("weight_decay", 1e-5, 1e-3, log=True),
                _float("momentum", 0.8, 0.99),
                _float("dropout", 0.0, 0.5),
                _cat("optimizer", "sgd", "adam", "adamw"),
                _cat("augmentation", "none", "crop", "crop_flip"),
                _cat("lr_schedule", "constant", "cosine"),
                _cat("batch_size", 32, 64, 128),
                _int("epochs", 2, 8),
                _cat("width", 8, 16, 32),
            ],
            keywords=(
                "resnet",
                "resnet18",
                "resnet-18",
                "resnet50",
                "cifar",
                "cifar10",
                "cifar-10",
                "image",
                "image classifier",
                "photo",
                "vision",
                "augmentation",
                "residual",
                "convolutional",
            ),
        ),
        Task(
            name="lstm-sentiment",
            description=(
                "LSTM classifier (embedding, LSTM, dropout, linear) trained from scratch on sentences "
                "(offline: Rotten Tomatoes critics' sentences, fresh or rotten)"
            ),
            script=TASKS_DIR / "lstm_sentiment.py",
            data="Rotten Tomatoes sentences (offline); imdb or local text files",
            model="word-level LSTM",
            family="lstm",
            metric=_ACCURACY,
            search_space=[
                _float("learning_rate", 3e-4, 1e-2, log=True),
                _float("dropout", 0.0, 0.5),
                _int("hidden_size", 32, 256, step=32),
                _int("layers", 1, 2),
                _cat("embedding_dim", 50, 100, 200),
                _cat("batch_size", 32, 64, 128),
                _int("epochs", 2, 8),
                _cat("max_len", 24, 40, 64),
                _float("clip", 0.5, 5.0, log=True),
            ],
            keywords=(
                "lstm",
                "rnn",
                "recurrent",
                "gru",
                "sequence",
                "word",
                "embedding",
                "sentiment",
                "imdb",
                "review",
                "movie",
                "scratch",
            ),
        ),
    ]
}


def names() -> list[str]:
    return sorted(TASKS)


def get(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTask(name) from None


def register(task: Task) -> Task:
    """Make a user's script task known for this process, so planning and validation treat it like a built-in."""
    TASKS[task.name] = task
    return task


def from_script(
    path: Path, metric: Metric | None = None, args: tuple[str, ...] = (), metric_regex: str | None = None
) -> Task:
    """A user's own training script as a task: its block's defaults, searched around their values; a plain
    script (no block) as a program, with the hyperparameters discovery finds in it, run with `args`, its
    metric read from its output by `metric_regex` where given."""
    from experiments.script import ScriptContractError, check_entry_point, find_block

    path = path.resolve()
    source = path.read_text()
    if metric_regex is not None:
        if not is_program(source):
            raise ScriptContractError(f"--metric-regex reads a plain script's output; {path.name} has run()")
        metric_pattern(metric_regex)
    if is_program(source):
        return _from_program(path, discovered(source, str(path)), metric, tuple(args), metric_regex)
    if args:
        raise ScriptContractError(
            f"{path.name} has a hyperparameter block, so its trials call run() and take no command-line "
            "arguments: use --script, or remove the block to run it as a program"
        )
    defaults = find_block(source, str(path)).defaults
    check_entry_point(source, str(path))
    return Task(
        name=f"script:{path.name}",
        description=f"user script {path}",
        script=path,
        data="as loaded by the script",
        model="as defined by the script",
        family="user",
        metric=metric or _ACCURACY,
        search_space=[p for p in map(space.around, defaults.items()) if p is not None],
        project=project.root(path),
    )


def _from_program(
    path: Path, found: Discovery, metric: Metric | None, args: tuple[str, ...], regex: str | None
) -> Task:
    """A plain script as a task: run as a program (experiments.program) with `args`, judged by the metric it
    reports; what `args` set is held fixed (experiments.command), not searched."""
    fixed = command.fixed(found, args)
    return Task(
        name=f"script:{path.name}",
        description=f"plain script {path}, run as a program ({len(found.hyperparameters)} hyperparameters found)",
        script=path,
        data="the script's own data",
        model="model the script builds",
        family=found.family,
        metric=metric or reported_metric(found.reported),
        search_space=[
            p for p in map(space.found, found.hyperparameters) if p is not None and p.name not in fixed
        ],
        curated=False,
        fractional=False,
        script_args=args,
        metric_regex=regex,
        fixed=fixed,
        project=project.root(path),
    )


def metric_named(name: str) -> Metric:
    """The metric `--metric` names, as a run's readings name it (`val_loss` is the validation `loss`, `ppl` is
    `perplexity`), its direction from METRIC_DIRECTIONS for the name after its split prefix (never guessed)."""
    named = metric_name(name.lower())
    base = metric_name(named.removeprefix("test_"))
    if base not in METRIC_DIRECTIONS:
        raise ValueError(
            f"--metric {name!r}: direction unknown; known metrics: {', '.join(METRIC_DIRECTIONS)}, each also "
            "with a val_, valid_, eval_ or test_ prefix"
        )
    return Metric(name=named, direction=METRIC_DIRECTIONS[base])


def reported_metric(names: list[str]) -> Metric:
    """The metric a plain script is judged by: the first of METRIC_DIRECTIONS it reports, else accuracy."""
    name = next((m for m in METRIC_DIRECTIONS if m in names), None)
    return Metric(name=name, direction=METRIC_DIRECTIONS[name]) if name else _ACCURACY
