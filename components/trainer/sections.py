"""The classifier Trainer's and Tuner's ``custom_config``, typed, and what the Trainer's
parts read of it. `trainer_module.run_fn` and `tuning.tuner_fn` rebuild `TrainerSettings`;
the lab builds the same sections (`PipelineConfig.custom_config`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from breastdx_core.settings import (
    ComponentSettings,
    RuntimeSettings,
    TaskSettings,
    TrainingSettings,
    TuningSettings,
)


@dataclasses.dataclass(frozen=True)
class TrainerSettings(ComponentSettings):
    """The classifier Trainer's ``custom_config``, typed (the Tuner's adds ``tuning``)."""

    task: TaskSettings
    training: TrainingSettings
    tuning: TuningSettings | None = None
    runtime: RuntimeSettings | None = None


def parts_config(settings: TrainerSettings, tuned: Mapping[str, Any] | None = None) -> dict:
    """What `model`, `data`, `training` and `export` read: the task, training and runtime
    sections merged (their field names are distinct), then the Tuner's values."""
    runtime = settings.runtime or RuntimeSettings()
    return {
        **settings.task.to_dict(),
        **settings.training.to_dict(),
        **runtime.to_dict(),
        **(tuned or {}),
    }
