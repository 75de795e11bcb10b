"""The patch classifier and the whole-image classifier (Shen et al. 2019), tf-keras.

The mammography pipeline variant's Trainer modules (components/mammo/patch_trainer/,
components/mammo/whole_trainer/) build and train both; `components.mammo.heatmap` slides
the patch classifier over a mammogram.

* Patch classifier: ResNet50 (no top) + global average pooling + a 5-way softmax,
  fine-tuned in three stages: the head alone at 1e-3, then the top block (conv5) too at
  1e-4, then every layer at 1e-5 (`PATCH_SCHEDULE`).
* Whole-image classifier: the patch classifier's convolutional backbone, run fully
  convolutionally over the whole (resized) mammogram, then two ResNet bottleneck
  blocks [512-512-1024], global average pooling and one sigmoid unit (malignant);
  trained in two stages: the new top layers at 1e-4, then everything at 1e-5
  (`WHOLE_SCHEDULE`).

The backbone takes any input size (built with ``input_shape=(None, None, 3)``), so the
patch classifier's weights carry over to the whole image unchanged. Inputs are grey
[h, w, 1] in [0, 1]; the model repeats the channel and, with pretrained weights,
applies ResNet50's own normalisation inside (as the classifier pipeline's trainer does).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.batchnorm import recalibrate_batchnorm
from breastdx_core import contract

log = logging.getLogger(__name__)

BACKBONE_NAME = "resnet50"
TOP_BLOCK_PREFIX = "conv5_"  # ResNet50's last stage: "the top block"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One fine-tuning stage: which layers train, at which learning rate, how long."""

    trainable: str  # "head", "top" (head + conv5) or "all"
    learning_rate: float
    epochs: int


PATCH_SCHEDULE = (Stage("head", 1e-3, 3), Stage("top", 1e-4, 10), Stage("all", 1e-5, 37))
WHOLE_SCHEDULE = (Stage("head", 1e-4, 30), Stage("all", 1e-5, 20))
TRAINABLE = ("head", "top", "all")


def format_schedule(schedule: Sequence[Stage]) -> str:
    """Stages as settings text: "head:0.001:3,top:0.0001:10" (breastdx_core/configs.py)."""
    return ",".join(f"{s.trainable}:{s.learning_rate:g}:{s.epochs}" for s in schedule)


def parse_schedule(text: str) -> Tuple[Stage, ...]:
    """The inverse of `format_schedule`.

    Raises:
        ValueError: naming the stage that is not ``<head|top|all>:<learning rate>:<epochs>``.
    """
    stages = []
    for item in (part.strip() for part in text.split(",")):
        fields = item.split(":")
        try:
            if len(fields) != 3 or fields[0] not in TRAINABLE:
                raise ValueError
            stages.append(Stage(fields[0], float(fields[1]), int(fields[2])))
        except ValueError:
            raise ValueError(f"schedule stage {item!r}: expected <{'|'.join(TRAINABLE)}>:<learning rate>:<epochs>, "
                             f"e.g. head:1e-3:3") from None
    return tuple(stages)


def _grey_to_backbone_input(x: tf.Tensor, weights: Optional[str]) -> tf.Tensor:
    x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    if weights is not None:
        x = keras.layers.Rescaling(contract.PIXEL_MAX, name="to_pixels")(x)
        x = keras.layers.Lambda(keras.applications.resnet50.preprocess_input, name="backbone_preprocess")(x)
    return x


def build_backbone(weights: Optional[str] = None) -> keras.Model:
    """ResNet50 without its top, any input size: [b, h, w, 3] -> [b, h/32, w/32, 2048].
    ``weights``: None, "imagenet" or a local .h5 file."""
    return keras.applications.ResNet50(include_top=False, weights=weights, input_shape=(None, None, 3))


def build_patch_classifier(patch_size: int, num_classes: int = len(contract.CBIS_PATCH_CLASSES),
                           weights: Optional[str] = None) -> keras.Model:
    """ResNet50 + GAP + softmax: grey [b, p, p, 1] in [0, 1] -> probabilities [b, n]."""
    inputs = keras.Input((patch_size, patch_size, 1), name="patch")
    backbone = build_backbone(weights)
    x = backbone(_grey_to_backbone_input(inputs, weights))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=contract.OUTPUT_PROBABILITIES)(x)
    model = keras.Model(inputs, outputs, name="patch_classifier")
    model.weights_source = weights
    return model


def bottleneck_block(x: tf.Tensor, filters: Sequence[int], name: str, stride: int = 1) -> tf.Tensor:
    """A ResNet bottleneck block [f1-f2-f3] with a projection shortcut."""
    f1, f2, f3 = filters
    shortcut = keras.layers.Conv2D(f3, 1, strides=stride, name=f"{name}_proj")(x)
    shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = keras.layers.Conv2D(f1, 1, strides=stride, name=f"{name}_1_conv")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_1_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = keras.layers.Conv2D(f2, 3, padding="same", name=f"{name}_2_conv")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_2_bn")(y)
    y = keras.layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = keras.layers.Conv2D(f3, 1, name=f"{name}_3_conv")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_3_bn")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def build_whole_image_classifier(patch_model: keras.Model, image_size: Sequence[int],
                                 block_filters: Sequence[int] = (512, 512, 1024),
                                 weights: Optional[str] = None) -> keras.Model:
    """Patch backbone + two bottleneck blocks + GAP + sigmoid:
    grey [b, H, W, 1] in [0, 1] -> P(malignant) [b, 1]. ``weights``: what the patch
    classifier's backbone started from (pretrained weights bring ResNet50's input
    normalisation); a freshly built patch model says so itself."""
    backbone = patch_model.get_layer(BACKBONE_NAME)
    weights = getattr(patch_model, "weights_source", weights)
    inputs = keras.Input((int(image_size[0]), int(image_size[1]), 1), name="mammogram")
    x = backbone(_grey_to_backbone_input(inputs, weights))
    x = bottleneck_block(x, block_filters, "top_block1", stride=2)
    x = bottleneck_block(x, block_filters, "top_block2")
    x = keras.layers.GlobalAveragePooling2D(name="whole_pool")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=contract.OUTPUT_POSITIVE)(x)
    return keras.Model(inputs, outputs, name="whole_image_classifier")


def set_trainable(model: keras.Model, which: str) -> None:
    """"head": only layers outside the backbone; "top": also the backbone's conv5 block;
    "all": everything."""
    backbone = model.get_layer(BACKBONE_NAME)
    for layer in model.layers:
        layer.trainable = layer is not backbone or which != "head"
    backbone.trainable = which != "head"
    if which == "top":
        for layer in backbone.layers:
            layer.trainable = layer.name.startswith(TOP_BLOCK_PREFIX)
    elif which == "all":
        for layer in backbone.layers:
            layer.trainable = True


def train_in_stages(model: keras.Model, schedule: Sequence[Stage], train: Tuple[np.ndarray, np.ndarray],
                    validation: Optional[Tuple[np.ndarray, np.ndarray]], loss: str, metrics: List[Any],
                    batch_size: int, class_weight: Optional[Dict[int, float]] = None,
                    augment: bool = True, seed: int = 0, label: str = "training") -> List[Dict[str, Any]]:
    """Fits ``model`` stage by stage (recompiling at each: new trainable set, new
    learning rate); returns one history dict per stage. ``label`` names the progress
    bar (components/progress.py)."""
    from components.progress import StepProgress

    histories = []
    x, y = train
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(x) // batch_size)
    for stage in schedule:
        if stage.epochs <= 0:
            continue
        set_trainable(model, stage.trainable)
        model.compile(optimizer=keras.optimizers.Adam(stage.learning_rate), loss=loss, metrics=metrics)
        history: Dict[str, Any] = {"stage": stage.trainable, "learning_rate": stage.learning_rate}
        progress = StepProgress(f"{label} stage {stage.trainable}", stage.epochs * steps_per_epoch)
        progress.set_model(model)
        progress.on_train_begin()
        for epoch in range(stage.epochs):
            xs = _flip(x, rng) if augment else x
            # One epoch per fit (fresh flips each time); the bar spans the stage.
            fit = model.fit(xs, y, batch_size=batch_size, epochs=1, shuffle=True, class_weight=class_weight,
                            verbose=0, callbacks=[_BatchForwarder(progress)])
            for key, values in fit.history.items():
                history.setdefault(key, []).append(float(values[-1]))
        if validation is not None and len(validation[0]):
            recalibrate_batchnorm(model, _batches(x, batch_size))
            scores = model.evaluate(validation[0], validation[1], batch_size=batch_size, verbose=0,
                                    return_dict=True)
            history.update({f"val_{k}": float(v) for k, v in scores.items()})
        progress.on_train_end()
        log.info("stage %s (lr %g, %d epochs): %s", stage.trainable, stage.learning_rate, stage.epochs,
                 {k: (v[-1] if isinstance(v, list) else v) for k, v in history.items() if k != "stage"})
        histories.append(history)
    recalibrate_batchnorm(model, _batches(x, batch_size))
    return histories


class _BatchForwarder(keras.callbacks.Callback):
    """Passes one fit's batch ends to a stage-long progress callback."""

    def __init__(self, target: keras.callbacks.Callback) -> None:
        super().__init__()
        self.target = target

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, float]] = None) -> None:
        self.target.on_train_batch_end(batch, logs)


def _flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal and vertical flips (training only)."""
    out = x.copy()
    h = rng.random(len(x)) < 0.5
    v = rng.random(len(x)) < 0.5
    out[h] = out[h][:, :, ::-1]
    out[v] = out[v][:, ::-1]
    return out


def _batches(x: np.ndarray, batch_size: int, limit: int = 32) -> List[np.ndarray]:
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)][:limit]


def class_weights(labels: np.ndarray, num_classes: int) -> Dict[int, float]:
    """Inverse-frequency weights, 1.0 on average over examples; absent classes get 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    total = counts.sum()
    return {i: (total / (num_classes * c) if c else 1.0) for i, c in enumerate(counts)}
