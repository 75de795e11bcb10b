"""Training diagnostics in the manner of SageMaker Debugger's built-in rules.

The Trainer module (`components/trainer/trainer_module.py`) adds a
`TrainingDiagnostics` callback to `model.fit`; every rule is checked while the model
trains, a rule that fires is logged at WARNING with the numbers that triggered it, and
`report()` goes into the model card (``training_diagnostics``) and from there into the
evaluation report.

Rules (SageMaker's names in brackets):
    vanishing_gradient [VanishingGradient]: some layer's mean |gradient| on a fixed probe
        batch is below ``vanishing_mean_abs``.
    exploding_gradient [ExplodingTensor]: the global gradient norm exceeds
        ``exploding_norm``, or a gradient or the loss is NaN/inf.
    poor_weight_initialization [PoorWeightInitialization]: before the first step, the
        spread of activation scales across layers (largest / smallest std of the
        Conv/Dense outputs) exceeds ``init_std_ratio``, or a layer is (almost) all zeros.
    overfitting [Overfit]: the gap val_loss - loss grew ``overfit_patience`` epochs in a
        row, is above ``overfit_ratio`` x loss, and val_loss is above its best before them.
    loss_not_decreasing [LossNotDecreasing]: the best training loss of the last
        ``loss_patience`` epochs is not ``loss_min_decrease`` (relative) below the best
        before them.

Gradients and activations are measured on one fixed probe batch (not the augmented
training stream), so successive checks compare like with like.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

log = logging.getLogger(__name__)

RULES = (
    "vanishing_gradient",
    "exploding_gradient",
    "poor_weight_initialization",
    "overfitting",
    "loss_not_decreasing",
)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When a rule fires (defaults close to SageMaker Debugger's)."""

    vanishing_mean_abs: float = 1e-7
    exploding_norm: float = 1e3
    init_std_ratio: float = 1e3
    init_dead_fraction: float = 0.99
    overfit_ratio: float = 0.1
    overfit_patience: int = 2
    loss_min_decrease: float = 0.01
    loss_patience: int = 2


def _kernel_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Hidden layers with a kernel (Conv, Dense, LSTM): where initialisation matters. The
    output layer is left out: its softmax squeezes the scale by design."""
    outputs = {id(t.node.layer) for t in model.outputs if hasattr(t, "node")}
    return [
        layer
        for layer in model.layers
        if any("kernel" in w.name for w in layer.weights)
        and not isinstance(layer, keras.Model)
        and id(layer) not in outputs
    ]


class TrainingDiagnostics(keras.callbacks.Callback):
    """Checks the rules of the module docstring during `fit`.

    Args:
        probe: (features, labels) of one batch, as the model takes them.
        thresholds: when rules fire.
    """

    def __init__(self, probe: tuple[Any, Any], thresholds: Thresholds | None = None):
        super().__init__()
        self.probe = tf.nest.map_structure(tf.convert_to_tensor, probe)
        self.thresholds = thresholds or Thresholds()
        self.findings: dict[str, dict[str, Any]] = {name: {"triggered": False} for name in RULES}
        self.losses: list[float] = []
        self.val_losses: list[float] = []
        self.gradient_log: list[dict[str, Any]] = []

    # --- measurements ------------------------------------------------------------------
    def gradient_stats(self) -> dict[str, Any]:
        """Global gradient norm and the smallest per-layer mean |gradient| on the probe.

        The loss goes through ``compute_loss``, which updates the model's loss metric: under
        a distribution strategy (the cluster's Trainer fits in MirroredStrategy) that update
        is only allowed in a replica context, so the probe runs as ``fit``'s own step does,
        in ``strategy.run``. Every replica sees the whole probe with its loss scaled by
        1 / replicas, so the SUM over replicas is the probe's loss and gradient."""
        features, labels = self.probe
        variables = [v for v in self.model.trainable_variables if "kernel" in v.name]

        def probe_step():
            with tf.GradientTape() as tape:
                predictions = self.model(features, training=False)
                step_loss = self.model.compute_loss(features, labels, predictions)
            step_grads = tape.gradient(step_loss, variables)
            return step_loss, {str(i): g for i, g in enumerate(step_grads) if g is not None}

        strategy = self.model.distribute_strategy
        per_replica_loss, per_replica_grads = strategy.run(probe_step)
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
        summed = {
            key: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for key, value in per_replica_grads.items()
        }
        grads = [summed.get(str(i)) for i in range(len(variables))]
        pairs = [(v.name, g) for v, g in zip(variables, grads) if g is not None]
        if not pairs:
            return {
                "loss": float(loss),
                "global_norm": 0.0,
                "min_mean_abs": float("nan"),
                "min_layer": None,
                "finite": bool(np.isfinite(float(loss))),
            }
        means = [(name, float(tf.reduce_mean(tf.abs(g)))) for name, g in pairs]
        name, smallest = min(means, key=lambda item: item[1] if math.isfinite(item[1]) else -1.0)
        norm = float(tf.linalg.global_norm([g for _, g in pairs]))
        finite = (
            all(math.isfinite(m) for _, m in means)
            and math.isfinite(norm)
            and math.isfinite(float(loss))
        )
        return {
            "loss": float(loss),
            "global_norm": norm,
            "min_mean_abs": smallest,
            "min_layer": name,
            "finite": finite,
        }

    def activation_stats(self) -> dict[str, Any]:
        """Std and zero fraction of every kernel layer's output on the probe."""
        layers = _kernel_layers(self.model)
        if not layers:
            return {"std_ratio": 1.0, "layers": 0}
        probe_model = keras.Model(self.model.inputs, [layer.output for layer in layers])
        outputs = probe_model(self.probe[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        stds = [float(tf.math.reduce_std(tf.cast(o, tf.float32))) for o in outputs]
        zeros = [float(tf.reduce_mean(tf.cast(tf.equal(o, 0.0), tf.float32))) for o in outputs]
        finite = [s for s in stds if math.isfinite(s)]
        positive = [s for s in finite if s > 0]
        ratio = (max(positive) / min(positive)) if positive else float("inf")
        dead_index = int(np.argmax(zeros))
        return {
            "layers": len(layers),
            "std_ratio": ratio if len(finite) == len(stds) else float("inf"),
            "largest_std": (
                layers[int(np.nanargmax(stds))].name,
                max(finite) if finite else float("nan"),
            ),
            "smallest_std": (
                layers[int(np.nanargmin(stds))].name,
                min(finite) if finite else float("nan"),
            ),
            "most_zeros": (layers[dead_index].name, zeros[dead_index]),
        }

    # --- rules -------------------------------------------------------------------------
    def _fire(self, rule: str, epoch: int | None, detail: str, **values: Any) -> None:
        finding = self.findings[rule]
        if finding["triggered"]:
            return
        finding.update({"triggered": True, "epoch": epoch, "detail": detail, **values})
        log.warning(
            "training diagnostic %s fired%s: %s",
            rule,
            "" if epoch is None else f" at epoch {epoch + 1}",
            detail,
        )

    def _note(self, rule: str, **values: Any) -> None:
        """Keeps the last measured numbers of a rule that has not fired."""
        if not self.findings[rule]["triggered"]:
            self.findings[rule].update(values)

    def _check_gradients(self, epoch: int | None) -> None:
        t = self.thresholds
        stats = self.gradient_stats()
        self.gradient_log.append({"epoch": epoch, **stats})
        if not stats["finite"] or stats["global_norm"] > t.exploding_norm:
            self._fire(
                "exploding_gradient",
                epoch,
                f"gradient global norm {stats['global_norm']:.4g} (threshold {t.exploding_norm:g}), "
                f"finite={stats['finite']}",
                global_norm=stats["global_norm"],
                threshold=t.exploding_norm,
            )
        else:
            self._note(
                "exploding_gradient", global_norm=stats["global_norm"], threshold=t.exploding_norm
            )
        if math.isfinite(stats["min_mean_abs"]) and stats["min_mean_abs"] < t.vanishing_mean_abs:
            self._fire(
                "vanishing_gradient",
                epoch,
                f"mean |gradient| of {stats['min_layer']} is {stats['min_mean_abs']:.3g} "
                f"(threshold {t.vanishing_mean_abs:g})",
                min_mean_abs=stats["min_mean_abs"],
                layer=stats["min_layer"],
                threshold=t.vanishing_mean_abs,
            )
        else:
            self._note(
                "vanishing_gradient",
                min_mean_abs=stats["min_mean_abs"],
                layer=stats["min_layer"],
                threshold=t.vanishing_mean_abs,
            )

    def on_train_begin(self, logs=None):
        t = self.thresholds
        stats = self.activation_stats()
        dead_layer, dead = stats.get("most_zeros", (None, 0.0))
        values = {
            "std_ratio": stats["std_ratio"],
            "smallest_std": stats.get("smallest_std"),
            "largest_std": stats.get("largest_std"),
            "most_zeros": stats.get("most_zeros"),
            "threshold": t.init_std_ratio,
            "dead_threshold": t.init_dead_fraction,
        }
        if stats["std_ratio"] > t.init_std_ratio or dead >= t.init_dead_fraction:
            self._fire(
                "poor_weight_initialization",
                None,
                f"activation std ranges {stats['std_ratio']:.3g}x across {stats['layers']} layers "
                f"(threshold {t.init_std_ratio:g}x; smallest {stats['smallest_std']}, largest "
                f"{stats['largest_std']}); most zeros: {dead_layer} {dead:.0%}",
                **values,
            )
        else:
            self._note("poor_weight_initialization", **values)
        self._check_gradients(None)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fire(
                "exploding_gradient",
                None,
                f"training loss became {loss} at batch {batch}",
                loss=float(loss),
            )
            self._fire(
                "loss_not_decreasing",
                None,
                f"training loss became {loss} at batch {batch}",
                loss=float(loss),
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        t = self.thresholds
        if "loss" in logs:
            self.losses.append(float(logs["loss"]))
        if "val_loss" in logs:
            self.val_losses.append(float(logs["val_loss"]))
        self._check_gradients(epoch)

        losses = self.losses
        if len(losses) > t.loss_patience:
            before = min(losses[: -t.loss_patience])
            recent = min(losses[-t.loss_patience :])
            values = {
                "best_before": before,
                "best_recent": recent,
                "min_decrease": t.loss_min_decrease,
                "losses": losses[:],
            }
            if not math.isfinite(recent) or recent > before * (1 - t.loss_min_decrease):
                self._fire(
                    "loss_not_decreasing",
                    epoch,
                    f"best loss of the last {t.loss_patience} epochs {recent:.4g} is not "
                    f"{t.loss_min_decrease:.0%} below the best before {before:.4g}",
                    **values,
                )
            else:
                self._note("loss_not_decreasing", **values)

        n = min(len(losses), len(self.val_losses))
        if n:
            gaps = [val - loss for loss, val in zip(losses[-n:], self.val_losses[-n:])]
            ratio = gaps[-1] / losses[-1] if losses[-1] else float("inf")
            values = {"gaps": gaps, "gap_ratio": ratio, "threshold": t.overfit_ratio}
            growing = n > t.overfit_patience and all(
                gaps[i] > gaps[i - 1] for i in range(n - t.overfit_patience, n)
            )
            # A growing gap while val_loss still falls is learning, not overfitting.
            val = self.val_losses[-n:]
            val_rising = n > t.overfit_patience and val[-1] > min(val[: -t.overfit_patience])
            if growing and val_rising and ratio > t.overfit_ratio:
                self._fire(
                    "overfitting",
                    epoch,
                    f"val_loss - loss grew {t.overfit_patience} epochs in a row to {gaps[-1]:.4g} "
                    f"({ratio:.0%} of the training loss; threshold {t.overfit_ratio:.0%}) while val_loss "
                    f"rose from {min(val[: -t.overfit_patience]):.4g} to {val[-1]:.4g}",
                    **values,
                )
            else:
                self._note("overfitting", **values)

    def on_train_end(self, logs=None):
        fired = [name for name in RULES if self.findings[name]["triggered"]]
        log.info(
            "training diagnostics: %s", ", ".join(fired) + " fired" if fired else "no rule fired"
        )

    def report(self) -> dict[str, Any]:
        """JSON-ready: every rule with its numbers, the thresholds, and which fired."""
        return _jsonable(
            {
                "rules": self.findings,
                "triggered": [name for name in RULES if self.findings[name]["triggered"]],
                "thresholds": dataclasses.asdict(self.thresholds),
                "gradients": self.gradient_log,
                "note": "Rules after SageMaker Debugger's (VanishingGradient, ExplodingTensor, "
                "PoorWeightInitialization, Overfit, LossNotDecreasing), measured on a fixed probe batch.",
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value
