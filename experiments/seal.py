"""What the final runs measured, sealed in the study storage beside their trials, for `approve` to check.

patch.json, patch.diff and the workspace are plain files in the run folder that anyone can edit after the run;
the storage holds the trials themselves. `approve` rebuilds the text it would write from the workspace and
these values and refuses when any digest differs, so it applies only what was measured.
"""

from __future__ import annotations

from typing import Any

import optuna
from pydantic import BaseModel, ConfigDict, ValidationError

from experiments import storage as storages

SEAL_ATTR = "seal"


class Variant(BaseModel):
    """One arm's variant, which `approve --arm` may apply instead of the final patch: its values and digests."""

    model_config = ConfigDict(extra="forbid")

    final_sha256: str
    diff_sha256: str
    params: dict[str, Any]


class Seal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    script: str
    workspace_sha256: str
    final_sha256: str
    diff_sha256: str
    params: dict[str, Any]
    arms: dict[str, Variant] = {}


def study_name(run_id: str) -> str:
    """The seal's own study: named so that no `<run_id>-...` listing of a run's trial studies counts it."""
    return f"seal.{run_id}"


def write(url: str, run_id: str, seal: Seal) -> None:
    study = optuna.create_study(
        study_name=study_name(run_id), storage=storages.open_storage(url), load_if_exists=True
    )
    study.set_user_attr(SEAL_ATTR, seal.model_dump(mode="json"))


def read(url: str, run_id: str) -> Seal | None:
    """The run's seal, or None when the storage holds none (a run that never finished its final runs)."""
    storage = storages.open_storage(url)
    if study_name(run_id) not in storages.study_names(storage):
        return None
    raw = optuna.load_study(study_name=study_name(run_id), storage=storage).user_attrs.get(SEAL_ATTR)
    try:
        return Seal.model_validate(raw)
    except ValidationError:
        return None
