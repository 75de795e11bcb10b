"""Hyperparameter search: TFX's Tuner component calls `tuner_fn` (re-exported by
`trainer_module`); `run_fn` reads the Tuner's best values through `tuned_values`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx

from breastdx_core.settings import SettingsError
from components.trainer.data import class_counts, class_weights, input_fn
from components.trainer.model import build_model
from components.trainer.sections import TrainerSettings

# What the Tuner may choose; run_fn takes these keys from its best hyperparameters.
TUNABLE = ("learning_rate", "dropout", "unfreeze_last", "optimizer", "batch_size")


def tuned_values(hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
    """The Tuner's best values (its `best_hyperparameters` artifact: a KerasTuner
    HyperParameters config) restricted to `TUNABLE`; {} without one."""
    if not hyperparameters:
        return {}
    values = keras_tuner.HyperParameters.from_config(hyperparameters).values
    return {k: v for k, v in values.items() if k in TUNABLE}


class _HyperModel(keras_tuner.HyperModel):
    """The Trainer's model over ``space`` (`TuningSettings.space`: choices per field).

    ``make_datasets(batch_size) -> (train, eval)``: the batch size is a hyperparameter,
    so the datasets are made per trial.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        space: dict[str, Any],
        make_datasets: Callable[[int], tuple[tf.data.Dataset, Any]],
        class_weight: dict[int, float] | None = None,
    ):
        super().__init__(name="breastdx")
        self.settings = settings
        self.space = space
        self.make_datasets = make_datasets
        self.class_weight = class_weight

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        return {name: hp.Choice(name, list(self.space[name])) for name in TUNABLE}

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        return build_model(self.settings.with_training(**self.declare(hp)))

    def fit(
        self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs
    ) -> dict[str, float]:
        # KerasTuner's own callbacks are Keras 3 objects; this model is tf-keras, so they
        # stay out and the trial reports its objective as a number instead.
        kwargs.pop("callbacks", None)
        train, evaluation = self.make_datasets(int(hp.get("batch_size")))
        history = model.fit(
            train, validation_data=evaluation, class_weight=self.class_weight, verbose=2, **kwargs
        )
        return {"val_loss": float(min(history.history["val_loss"]))}


class _RandomSearch(keras_tuner.RandomSearch):
    """KerasTuner's random search for a tf-keras model.

    KerasTuner 1.4 checks that models are Keras 3 and adds Keras 3 checkpoint callbacks;
    this module's models are tf-keras (TFT and TFMA need them), so each trial builds and
    fits through the hypermodel directly, as `Tuner.run_trial`'s documentation shows.
    Only the best hyperparameters are used (by TFX's Tuner), never a stored trial model.
    """

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        keras.backend.clear_session()
        hp = trial.hyperparameters
        return self.hypermodel.fit(hp, self.hypermodel.build(hp), *args, **kwargs)


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """TFX Tuner's entry point: a KerasTuner random search over `TUNABLE`.

    ``custom_config`` is the Trainer's sections plus ``tuning`` (trials, epochs, the space);
    each trial trains for ``fn_args.train_steps`` steps and is scored by its best val_loss.
    """
    settings = TrainerSettings.from_custom_config(fn_args.custom_config)
    if settings.tuning is None:
        raise SettingsError("Tuner: custom_config has no tuning section")
    seed = settings.task.seed
    keras.utils.set_random_seed(seed)
    tf_transform_output = (
        tft.TFTransformOutput(fn_args.transform_output) if fn_args.transform_output else None
    )

    def make_datasets(batch_size: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        return (
            input_fn(
                fn_args.train_files,
                fn_args.data_accessor,
                tf_transform_output,
                batch_size,
                True,
                settings,
            ),
            input_fn(
                fn_args.eval_files,
                fn_args.data_accessor,
                tf_transform_output,
                batch_size,
                False,
                settings,
            ),
        )

    weights = None
    if settings.training.class_weights and fn_args.train_files:
        weights = class_weights(class_counts(fn_args.train_files, len(settings.task.class_names)))
    tuner = _RandomSearch(
        _HyperModel(settings, settings.tuning.space(), make_datasets, weights),
        objective=keras_tuner.Objective("val_loss", "min"),
        max_trials=settings.tuning.trials,
        seed=seed,
        directory=fn_args.working_dir,
        project_name="breastdx_tuning",
        overwrite=True,
    )
    epochs = max(1, settings.tuning.epochs)
    return tfx.components.TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "epochs": epochs,
            "steps_per_epoch": max(1, math.ceil((fn_args.train_steps or 1) / epochs)),
            "validation_steps": max(1, fn_args.eval_steps or 1),
        },
    )
