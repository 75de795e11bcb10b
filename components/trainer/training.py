"""The fit loop: the study's callbacks, the training diagnostics, the distribution strategy.

Called by `trainer_module.run_fn` and the model lab.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tf_keras as keras

from components.progress import StepProgress
from components.trainer import diagnostics
from components.trainer.model import compile_model, resolve_weights, set_trainable
from components.trainer.sections import TrainerSettings

# Eval images the training diagnostics measure gradients on.
DIAGNOSTICS_PROBE = 16


class WallTimeBudget(keras.callbacks.Callback):
    """Stops training once ``minutes`` of wall time or ``cpu_minutes`` of this process's CPU
    time have passed (checked after every batch; 0: no limit) and counts the batches
    trained: the summary says how many images the model saw. CPU time is the budget that
    compares candidates on a shared machine: wall time there depends on the neighbours."""

    def __init__(self, minutes: float, batch_size: int, cpu_minutes: float = 0.0):
        super().__init__()
        self.seconds = float(minutes) * 60.0
        self.cpu_seconds = float(cpu_minutes) * 60.0
        self.batch_size = int(batch_size)
        self.batches = 0
        self.stopped_early = False
        self.stopped_by = ""
        self._started = 0.0
        self._cpu_started = 0.0

    def on_train_begin(self, logs=None):
        self._started = time.time()
        self._cpu_started = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.seconds > 0 and time.time() - self._started > self.seconds:
            self.stopped_early, self.stopped_by = True, "wall time"
        elif self.cpu_seconds > 0 and time.process_time() - self._cpu_started > self.cpu_seconds:
            self.stopped_early, self.stopped_by = True, "CPU time"
        if self.stopped_early:
            self.model.stop_training = True


def plan_budget(
    settings: TrainerSettings,
    train_steps: int | None,
    eval_steps: int | None,
    train_images: int | None,
) -> dict[str, Any]:
    """The training budget: ``train_steps`` spread over ``epochs`` when set (the synthetic
    demo's preset), else ``epochs`` full passes over the ``train_images`` of the train
    split; validation on ``eval_steps`` shuffled batches, or the whole eval split (None)."""
    training = settings.training
    epochs = max(1, int(training.epochs))
    batch_size = int(training.batch_size)
    if train_steps:
        steps_per_epoch, basis = max(1, math.ceil(train_steps / epochs)), "steps"
    elif train_images:
        steps_per_epoch, basis = (
            max(1, math.ceil(train_images / batch_size)),
            "epochs over the train split",
        )
    else:
        raise ValueError(
            "no training budget: train_steps is 0 and the train split's size is unknown "
            "(set train_steps, or give fit_model train_images)"
        )
    return {
        "basis": basis,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "planned_images": epochs * steps_per_epoch * batch_size,
        "train_images": train_images,
        "validation": f"{eval_steps} shuffled eval batches"
        if eval_steps
        else "the whole eval split",
        "validation_steps": eval_steps or None,
        "max_train_minutes": float(training.max_train_minutes or 0.0),
        "max_train_cpu_minutes": float(training.max_train_cpu_minutes or 0.0),
    }


def fit_model(
    model: keras.Model,
    train: tf.data.Dataset,
    evaluation: tf.data.Dataset,
    settings: TrainerSettings,
    train_steps: int | None,
    eval_steps: int | None,
    class_weight: dict[int, float] | None = None,
    log_dir: str | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    train_images: int | None = None,
) -> tuple[dict[str, list[float]], dict[str, Any], float]:
    """Trains ``model`` with the study's callbacks and the training diagnostics.

    ``evaluation`` must be finite when ``eval_steps`` is None (the whole split is read at
    every validation) and repeat when it is set; `data.input_fn` builds both.

    Returns:
        (history {metric: [per epoch]}, the diagnostics report with the budget as
        ``budget`` (planned and trained: epochs, steps, images seen), seconds of training).
    """
    training = settings.training
    budget = plan_budget(settings, train_steps, eval_steps, train_images)
    epochs, steps_per_epoch = budget["epochs"], budget["steps_per_epoch"]
    # One un-augmented eval batch: the diagnostics measure gradients on the same data each time.
    probe_features, probe_labels = next(iter(evaluation))
    probe_size = DIAGNOSTICS_PROBE
    probe = (
        {k: v[:probe_size] for k, v in probe_features.items()}
        if isinstance(probe_features, dict)
        else probe_features[:probe_size],
        probe_labels[:probe_size],
    )
    checks = diagnostics.TrainingDiagnostics(probe, diagnostics.Thresholds())
    # A randomly initialised network validates with batch-norm statistics still near
    # their initial values (recalibrated only after fitting): its val_loss misleads, so
    # the schedule and early stopping follow the training loss there.
    # Whole epochs re-estimate them (hundreds of steps at momentum 0.99), so a data-sized
    # budget stops early on the patient-grouped eval split's loss.
    monitor = (
        "val_loss"
        if resolve_weights(training.weights) is not None or budget["basis"] != "steps"
        else "loss"
    )
    clock = WallTimeBudget(
        budget["max_train_minutes"], budget["batch_size"], budget["max_train_cpu_minutes"]
    )
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor,
            factor=training.lr_factor,
            patience=1,
            min_lr=training.min_learning_rate,
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            patience=int(training.early_stopping_patience),
            restore_best_weights=True,
        ),
        checks,
        clock,
        StepProgress(
            "Trainer", epochs * steps_per_epoch
        ),  # the console's bar (components/progress.py)
        *extra_callbacks,
    ]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    # A handful of steps (`breastdx compare`'s small budget) costs less eagerly than
    # tracing and optimising a graph of hundreds of layers (minutes on 2 CPU cores).
    model.run_eagerly = bool(settings.run.run_eagerly)
    started = time.time()
    history = model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=evaluation,
        validation_steps=budget["validation_steps"],
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.time() - started
    clean_history = {k: [float(v) for v in values] for k, values in history.history.items()}
    report = checks.report()
    report["budget"] = {
        **budget,
        "epochs_trained": len(clean_history.get("loss", [])),
        "steps_trained": clock.batches,
        "images_seen": clock.batches * budget["batch_size"],
        "stopped_by": (
            clock.stopped_by
            if clock.stopped_early
            else "early stopping"
            if len(clean_history.get("loss", [])) < epochs
            else "budget"
        ),
    }
    return clean_history, report, seconds


def train_model(
    model: keras.Model,
    train: tf.data.Dataset,
    evaluation: tf.data.Dataset,
    settings: TrainerSettings,
    train_steps: int | None,
    eval_steps: int | None,
    **fit_args: Any,
) -> tuple[dict[str, list[float]], dict[str, Any], float]:
    """The study's fine-tuning for a pretrained backbone, `fit_model` otherwise.

    Pretrained: first the head alone on the frozen backbone (``fine_tune_head_fraction``
    of the budget, at ``learning_rate``): a randomly initialised head's large gradients
    would otherwise wreck the ImageNet features. Then the top ``unfreeze_last`` backbone
    layers join at ``learning_rate * fine_tune_lr_factor``. Batch-norm layers stay frozen
    in inference mode throughout (`model.set_trainable`). Same returns as `fit_model`;
    the histories run on across the phases and the report says what each phase did.
    """
    training = settings.training
    fraction = float(training.fine_tune_head_fraction)
    if resolve_weights(training.weights) is None or not 0 < fraction < 1:
        return fit_model(model, train, evaluation, settings, train_steps, eval_steps, **fit_args)
    epochs = max(1, int(training.epochs))
    head_epochs = min(max(1, round(epochs * fraction)), max(1, epochs - 1))
    minutes = float(training.max_train_minutes or 0.0)
    cpu_minutes = float(training.max_train_cpu_minutes or 0.0)
    learning_rate = float(training.learning_rate)
    phases = [
        ("head", 0, learning_rate, head_epochs, fraction),
        (
            "fine_tune",
            int(training.unfreeze_last),
            learning_rate * float(training.fine_tune_lr_factor),
            max(1, epochs - head_epochs),
            1 - fraction,
        ),
    ]
    history: dict[str, list[float]] = {}
    reports, seconds, plan, budget = [], 0.0, [], None
    for name, unfreeze, rate, phase_epochs, share in phases:
        layers_training = set_trainable(model, unfreeze)
        compile_model(model, settings, rate)
        phase_settings = settings.with_training(
            epochs=phase_epochs,
            learning_rate=rate,
            min_learning_rate=min(rate, float(training.min_learning_rate)),
            max_train_minutes=minutes * share,
            max_train_cpu_minutes=cpu_minutes * share,
        )
        steps = max(1, round(train_steps * share)) if train_steps else train_steps
        part, report, phase_seconds = fit_model(
            model, train, evaluation, phase_settings, steps, eval_steps, **fit_args
        )
        for key, values in part.items():
            history.setdefault(key, []).extend(values)
        seconds += phase_seconds
        phase_budget = report.get("budget", {})
        plan.append(
            {
                "phase": name,
                "backbone_layers_training": layers_training,
                "learning_rate": rate,
                "epochs": len(part.get("loss", [])),
                "steps": phase_budget.get("steps_trained"),
            }
        )
        if budget is None:
            budget = dict(phase_budget)
        elif phase_budget:
            for key in (
                "epochs",
                "planned_images",
                "epochs_trained",
                "steps_trained",
                "images_seen",
            ):
                if isinstance(phase_budget.get(key), (int, float)):
                    budget[key] = budget.get(key, 0) + phase_budget[key]
            budget["stopped_by"] = phase_budget.get("stopped_by")
        reports.append(report)
    report = reports[-1]
    if budget:
        # The phases split the wall-time budget; the card states the whole one, as set.
        budget["max_train_minutes"] = minutes
        budget["max_train_cpu_minutes"] = cpu_minutes
        budget["max_train_minutes_per_phase"] = [round(minutes * share, 3) for *_, share in phases]
        report["budget"] = budget
    report["fine_tuning"] = plan
    return history, report, seconds


STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")
BATCHNORM_BATCHES = 16  # un-augmented train batches that re-estimate batch-norm statistics


def distribution_strategy(name: str | None) -> tf.distribute.Strategy:
    """The tf.distribute strategy a cluster run asks for (kubeflow_runner sets the runtime
    section's ``distribution_strategy``): mirrored over the GPUs of one node,
    multi-worker over several (TF_CONFIG from the cluster), or none (local runs)."""
    name = name or "none"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "none":
        return tf.distribute.get_strategy()  # the default: no distribution
    raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {name!r}")
