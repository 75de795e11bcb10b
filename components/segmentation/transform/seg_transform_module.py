"""The segmentation variant's Transform module: image and mask bytes -> aligned tensors.

TFX's Transform component calls `preprocessing_fn` in the segmentation pipeline
(`pipeline.pipeline.create_segmentation_pipeline`). The image goes through the
classification pipeline's own `decode_image` (one decode function for the system);
the mask goes through the same resize-with-pad geometry, so every mask pixel stays on
its image pixel. Serving feeds ``image_raw`` alone: the mask and label outputs are then
pruned from the graph.

This file sits in a folder of its own: TFX hashes every .py file of a module file's
folder into the user-code wheel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from breastdx_core import contract
from components.transform import transform_module

MASK_LEVEL = 127  # masks are 0/255 PNGs; anything brighter than mid-grey is lesion


def decode_mask(
    encoded: tf.Tensor, model_size: Sequence[int], native_size: Sequence[int] | None = None
) -> tf.Tensor:
    """Decodes one mask with the image's geometry (aspect kept, padded).

    Args:
        encoded: scalar tf.string, a PNG mask's bytes; b"" means "no lesion".
        model_size: (height, width) of the output.
        native_size: as in `decode_image`: crop/pad to it first when set.

    Returns:
        float32 [height, width] in {0, 1}.
    """
    height, width = int(model_size[0]), int(model_size[1])

    def decode() -> tf.Tensor:
        mask = tf.io.decode_image(encoded, channels=1, expand_animations=False)
        mask.set_shape([None, None, 1])
        if native_size:
            mask = tf.image.resize_with_crop_or_pad(mask, native_size[0], native_size[1])
        # Bilinear then a threshold at mid-grey keeps the mask on its image's geometry
        # (the image is resized bilinearly by the same resize_with_pad).
        mask = tf.image.resize_with_pad(tf.cast(mask, tf.float32), height, width)
        return tf.cast(mask[..., 0] > MASK_LEVEL, tf.float32)

    return tf.cond(
        tf.strings.length(encoded) > 0, decode, lambda: tf.zeros([height, width], tf.float32)
    )


def preprocessing_fn(
    inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]
) -> dict[str, tf.Tensor]:
    """tf.Transform's callback for the segmentation variant.

    Args:
        inputs: ``image_raw`` tf.string [batch, 1]; in training also ``mask_raw``
            tf.string [batch, 1] and ``label`` int64 [batch, 1].
        custom_config: `transform_module.TransformSettings`'s dictionary form (the task's
            image spec).

    Returns:
        ``image`` float32 [batch, h, w, 3] in [0, 1]; with the targets present also
        ``mask`` float32 [batch, h, w] in {0, 1} and ``label`` int64 [batch].
    """
    task = transform_module.TransformSettings.from_custom_config(custom_config).task
    model_size, native_size = task.model_size, task.native_size
    outputs = transform_module.preprocessing_fn(  # the image and label exactly as the classifier's
        {k: v for k, v in inputs.items() if k != contract.MASK_KEY}, custom_config
    )
    if contract.MASK_KEY in inputs:
        outputs[contract.TRANSFORMED_MASK_KEY] = tf.map_fn(
            lambda x: decode_mask(x, model_size, native_size),
            tf.reshape(inputs[contract.MASK_KEY], [-1]),
            fn_output_signature=tf.TensorSpec([model_size[0], model_size[1]], tf.float32),
        )
    return outputs
