"""The Trainer module: TFX's Trainer component calls `run_fn(fn_args)`, its Tuner `tuner_fn`.

Settings arrive in ``fn_args.custom_config`` as sections (`TrainerSettings`: the task
and training sections of breastdx_core/settings.py, every field required, no defaults
here that could disagree; an optional runtime section) and, when the pipeline tunes, the
Tuner's best values in ``fn_args.hyperparameters`` (they replace the training section's
fields of the same names: `TrainerSettings.tuned`). The parts take the typed settings. The
rooms beside this file
hold the parts: `model` (backbone registry + head), `data` (input pipeline, augmentation, class weights),
`training` (fit loop, strategy), `export` (signatures, the Trainer's card fields),
`tuning` (KerasTuner). TFX hashes this folder into the module's cache key, so a change
to any of them re-trains. `breastdx compare` and `breastdx cv` call `run_fn` (with the
same sections) once per backbone or fold: there is no second training code path.

Keras 2 (tf-keras) is imported by name, so the module builds the same model whatever
TF_USE_LEGACY_KERAS says; TFT's transform layer and TFMA are tf-keras too.
"""

from __future__ import annotations

import logging

import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx

from breastdx_core import contract
from components.batchnorm import recalibrate_batchnorm
from components.trainer import calibration
from components.trainer.data import class_counts, class_weights, input_fn  # noqa: F401
from components.trainer.export import (
    HEATMAP_OUTPUT,
    SIGNATURE_EXPLAIN,  # noqa: F401
    export_serving_model,
    fit_ood,
    write_model_card,
)
from components.trainer.model import (
    ARCHITECTURES,
    BACKBONES,
    CNN_LSTM,
    OPTIMIZERS,  # noqa: F401
    build_model,
    resolve_weights,
)
from components.trainer.sections import TrainerSettings
from components.trainer.training import (
    BATCHNORM_BATCHES,
    STRATEGIES,  # noqa: F401
    distribution_strategy,
    fit_model,
    train_model,
)
from components.trainer.tuning import TUNABLE, tuned_values, tuner_fn  # noqa: F401

log = logging.getLogger(__name__)

# TFX loads `run_fn` and `tuner_fn` from this module; the lab and tests reach the parts through it.
__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "BATCHNORM_BATCHES",
    "CNN_LSTM",
    "HEATMAP_OUTPUT",
    "OPTIMIZERS",
    "SIGNATURE_EXPLAIN",
    "STRATEGIES",
    "TUNABLE",
    "TrainerSettings",
    "build_model",
    "class_counts",
    "class_weights",
    "distribution_strategy",
    "export_serving_model",
    "fit_model",
    "input_fn",
    "resolve_weights",
    "run_fn",
    "tuned_values",
    "tuner_fn",
    "write_model_card",
]


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer's entry point: train, then export the serving model and its card."""
    tuned = tuned_values(getattr(fn_args, "hyperparameters", None))
    settings = TrainerSettings.from_custom_config(fn_args.custom_config).tuned(tuned)
    if tuned:
        log.info("Trainer: the Tuner's best hyperparameters %s", tuned)
    task, training = settings.task, settings.training
    keras.utils.set_random_seed(int(task.seed))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(training.batch_size)
    train = input_fn(
        fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size, True, settings
    )
    # No eval steps: every validation reads the whole eval split once (all its patients).
    evaluation = input_fn(
        fn_args.eval_files,
        fn_args.data_accessor,
        tf_transform_output,
        batch_size,
        False,
        settings,
        whole_split=not fn_args.eval_steps,
    )

    counts = class_counts(fn_args.train_files, len(task.class_names))
    log.info("Trainer: train split class counts %s", dict(zip(task.class_names, counts.tolist())))
    weights = class_weights(counts) if training.class_weights else None

    with distribution_strategy(settings.run.distribution_strategy).scope():
        model = build_model(settings)
    history, report, seconds = train_model(
        model,
        train,
        evaluation,
        settings,
        fn_args.train_steps,
        fn_args.eval_steps,
        class_weight=weights,
        log_dir=fn_args.model_run_dir,
        train_images=int(counts.sum()),
    )
    budget = report.pop("budget")
    log.info(
        "Trainer: saw %d images (%d epochs of %d steps, batch %d; %s) of %d in the train split",
        budget["images_seen"],
        budget["epochs_trained"],
        budget["steps_per_epoch"],
        budget["batch_size"],
        budget["stopped_by"],
        budget["train_images"],
    )
    if resolve_weights(training.weights) is None:
        # Few steps leave the moving statistics near 0/1 and the exported model saturated
        # (components/batchnorm.py); pretrained backbones keep their ImageNet statistics.
        plain = input_fn(
            fn_args.train_files,
            fn_args.data_accessor,
            tf_transform_output,
            batch_size,
            False,
            settings,
        )
        recalibrate_batchnorm(
            model,
            [
                features[contract.TRANSFORMED_IMAGE_KEY]
                for features, _ in plain.take(BATCHNORM_BATCHES)
            ],
        )
    calibrated = None
    if training.calibration == "temperature":
        whole_eval = input_fn(
            fn_args.eval_files,
            fn_args.data_accessor,
            tf_transform_output,
            batch_size,
            False,
            settings,
            whole_split=True,
        )
        model, calibrated = calibration.calibrate(model, whole_eval, int(task.positive_index))
        log.info(
            "Trainer: temperature %.3f fitted on %d eval images; ECE %.3f -> %.3f",
            calibrated["temperature"],
            calibrated["n"],
            calibrated["ece_before"],
            calibrated["ece_after"],
        )
    # The OOD score's density is fitted on the train split as the model will see it.
    ood = fit_ood(model, fn_args.train_files, tf_transform_output, settings)
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir, settings, ood=ood)
    write_model_card(
        fn_args.serving_model_dir,
        settings,
        model,
        history,
        counts,
        seconds,
        report,
        tuned or None,
        ood=ood,
    )
    calibration.update_card(
        fn_args.serving_model_dir,
        {
            "training_budget": budget,
            "calibration": calibrated
            or {"method": "none", "temperature": 1.0, "fitted_on": "none"},
        },
    )
