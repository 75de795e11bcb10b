"""The Transform module: encoded image bytes -> the model's input tensor.

TFX's Transform component calls `preprocessing_fn` (with the pipeline's
`custom_config`: the task section of `breastdx_core/settings.py`, which holds the image spec). Its graph is the only
preprocessing in the system: the Trainer trains on its output and exports it inside
every serving signature, so training and serving cannot skew. Augmentation is not
here (it belongs to training only: the Trainer's input function).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from breastdx_core import contract
from breastdx_core.settings import ComponentSettings, TaskSettings


@dataclasses.dataclass(frozen=True)
class TransformSettings(ComponentSettings):
    """The Transform modules' ``custom_config``, typed: the task (its image spec)."""

    task: TaskSettings


def decode_image(
    encoded: tf.Tensor, model_size: Sequence[int], native_size: Sequence[int] | None = None
) -> tf.Tensor:
    """Decodes one encoded image and fits it to the model.

    Args:
        encoded: scalar tf.string, a PNG, JPEG, GIF or BMP file's bytes.
        model_size: (height, width) of the output.
        native_size: (height, width) of a full patch, or None. When set the image is
            first zero-padded (edge patches) or centre-cropped to it, so every patch
            keeps its pixel scale; then resized. When None, the image is resized to fit
            with its aspect ratio kept and padded.

    Returns:
        float32 [height, width, 3] in [0, 1].
    """
    image = tf.io.decode_image(encoded, channels=contract.MODEL_CHANNELS, expand_animations=False)
    image.set_shape([None, None, contract.MODEL_CHANNELS])
    if native_size:
        image = tf.image.resize_with_crop_or_pad(image, native_size[0], native_size[1])
    image = tf.image.resize_with_pad(tf.cast(image, tf.float32), model_size[0], model_size[1])
    return image / contract.PIXEL_MAX


def preprocessing_fn(
    inputs: dict[str, tf.Tensor], custom_config: Mapping[str, Any]
) -> dict[str, tf.Tensor]:
    """tf.Transform's callback: raw features of a batch -> transformed features.

    Args:
        inputs: ``image_raw`` tf.string [batch, 1] and ``label`` int64 [batch, 1]
            (serving feeds ``image_raw`` alone; the label output is then dropped).
        custom_config: `TransformSettings`'s dictionary form: the task's ``model_size`` and
            ``native_size`` (see `decode_image`).

    Returns:
        ``image`` float32 [batch, height, width, 3] in [0, 1] and ``label`` int64 [batch].
    """
    task = TransformSettings.from_custom_config(custom_config).task
    model_size, native_size = task.model_size, task.native_size
    encoded = tf.reshape(inputs[contract.IMAGE_KEY], [-1])
    images = tf.map_fn(
        lambda x: decode_image(x, model_size, native_size),
        encoded,
        fn_output_signature=tf.TensorSpec(
            [model_size[0], model_size[1], contract.MODEL_CHANNELS], tf.float32
        ),
    )
    outputs = {contract.TRANSFORMED_IMAGE_KEY: images}
    if contract.LABEL_KEY in inputs:
        outputs[contract.TRANSFORMED_LABEL_KEY] = tf.reshape(inputs[contract.LABEL_KEY], [-1])
    return outputs
