"""The classifier Trainer's and Tuner's ``custom_config``, typed: what `trainer_module.run_fn`
and `tuning.tuner_fn` rebuild, and what the Trainer's parts (`model`, `data`, `training`,
`export`) take. The lab, the benches and the tests build the same object from a
`PipelineConfig` (`TrainerSettings.of`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from breastdx_core.settings import (
    ComponentSettings,
    RuntimeSettings,
    TaskSettings,
    TrainingSettings,
    TuningSettings,
)

if TYPE_CHECKING:
    from breastdx_core.configs import PipelineConfig


@dataclasses.dataclass(frozen=True)
class TrainerSettings(ComponentSettings):
    """The classifier Trainer's ``custom_config``, typed (the Tuner's adds ``tuning``)."""

    task: TaskSettings
    training: TrainingSettings
    tuning: TuningSettings | None = None
    runtime: RuntimeSettings | None = None

    @classmethod
    def of(cls, config: PipelineConfig, **sections: Any) -> TrainerSettings:
        """What a pipeline run's Trainer gets (`PipelineConfig.custom_config("training")`),
        typed; ``sections`` adds ``tuning=`` or ``runtime=``."""
        return cls(task=config.task_settings, training=config.training, **sections)

    @property
    def run(self) -> RuntimeSettings:
        """How the Trainer runs (the default strategy, graph mode without a runtime section)."""
        return self.runtime or RuntimeSettings()

    def with_training(self, **fields: Any) -> TrainerSettings:
        """A copy with these `TrainingSettings` fields changed (the Tuner's chosen values,
        a fine-tuning phase's rate); an unknown name is a TypeError."""
        if not fields:
            return self
        return dataclasses.replace(self, training=dataclasses.replace(self.training, **fields))

    def with_task(self, **fields: Any) -> TrainerSettings:
        """A copy with these `TaskSettings` fields changed (a bench's input size)."""
        return dataclasses.replace(self, task=dataclasses.replace(self.task, **fields))

    def tuned(self, values: Mapping[str, Any] | None) -> TrainerSettings:
        """The Tuner's best values (`tuning.tuned_values`: training field -> value) applied."""
        return self.with_training(**(values or {}))

    def card_values(self) -> dict[str, Any]:
        """The task and training fields in their dictionary form (JSON's lists), for the
        model card's hyperparameters."""
        return {**self.task.to_dict(), **self.training.to_dict()}
