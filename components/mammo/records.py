"""The mammography variant's records: what CbisExampleGen writes and how both Trainer
modules and every exported signature read it.

`components.mammo.ingest` calls `to_example`; the patch and whole-image Trainer
modules call `load_arrays` and rebuild `MammoTrainerSettings`; `components.mammo.export` calls
`decode_grey` inside the serving signatures, so training and serving decode and fit
an image with the same TF ops (`components.mammo.images.resize_keep_aspect`).

One tf.Example per image: ``image_raw`` (an 8-bit grey PNG, already fitted to the
model's size by the ingest), ``label`` (patches: index into
contract.CBIS_PATCH_CLASSES; mammograms: 1 malignant, 0 benign), ``patient_id`` and
``source_path`` (the image id, for tracing).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from breastdx_core import contract
from breastdx_core.settings import (
    ComponentSettings,
    MammographySettings,
    RuntimeSettings,
    TaskSettings,
    TrainingSettings,
)
from components.mammo import images

WHOLE_CLASS_NAMES = ("benign", "malignant")
SIGNATURE_HEATMAP = "heatmap"
OUTPUT_HEATMAP = "heatmap"  # float32 [None, rows, cols, 5] patch-class probabilities
FEATURES = {
    contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


@dataclasses.dataclass(frozen=True)
class MammoTrainerSettings(ComponentSettings):
    """Both mammography Trainers' ``custom_config``, typed: the task context (seed, synthetic),
    the training section's weights and augmentation, and the mammography section."""

    task: TaskSettings
    training: TrainingSettings
    mammography: MammographySettings
    # The cluster compile adds it to the Trainer; this module trains on the default strategy.
    runtime: RuntimeSettings | None = None


def encode_png(pixels: np.ndarray) -> bytes:
    """float [h, w] in [0, 1] (or uint8) -> 8-bit grey PNG bytes."""
    from PIL import Image

    grey = np.asarray(pixels)
    if grey.dtype != np.uint8:
        grey = np.clip(np.round(grey * contract.PIXEL_MAX), 0, contract.PIXEL_MAX).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    return buffer.getvalue()


def to_example(pixels: np.ndarray, label: int, patient_id: str, source: str) -> tf.train.Example:
    """One record (module docstring)."""

    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                contract.IMAGE_KEY: _bytes(encode_png(pixels)),
                contract.LABEL_KEY: tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(label)])
                ),
                contract.PATIENT_KEY: _bytes(patient_id.encode()),
                contract.SOURCE_PATH_KEY: _bytes(source.encode()),
            }
        )
    )


def decode_grey(image_bytes: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """[None] encoded bytes (PNG/JPEG, any size) -> grey float32 [None, h, w, 1] in [0, 1],
    fitted to ``size`` with its aspect kept and padded (identity for the ingest's
    records, which already have that size)."""

    def one(encoded):
        image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
        image = tf.cast(image, tf.float32) / contract.PIXEL_MAX
        return images.resize_keep_aspect(image, size)

    return tf.map_fn(
        one, image_bytes, fn_output_signature=tf.TensorSpec([size[0], size[1], 1], tf.float32)
    )


def parse_image_bytes(serialized: tf.Tensor) -> tf.Tensor:
    """[None] serialized tf.Example -> [None] ``image_raw`` bytes (serving parses only
    what a client has: the image)."""
    parsed = tf.io.parse_example(serialized, {contract.IMAGE_KEY: FEATURES[contract.IMAGE_KEY]})
    return parsed[contract.IMAGE_KEY]


def load_arrays(
    file_patterns: Sequence[str], size: Sequence[int], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Every record of a split as (grey float32 [n, h, w, 1], labels int64 [n]).

    The stage-wise fine-tuning (`components.mammo.models.train_in_stages`) shuffles and
    flips in memory; at the demo's sizes a split fits easily (the study's full set
    would want a streaming input function instead).
    """
    files: list[str] = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no records match {list(file_patterns)}")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size)
    xs, ys = [], []
    for serialized in dataset:
        parsed = tf.io.parse_example(serialized, FEATURES)
        xs.append(decode_grey(parsed[contract.IMAGE_KEY], size).numpy())
        ys.append(parsed[contract.LABEL_KEY].numpy())
    if not xs:
        return np.zeros((0, size[0], size[1], 1), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)
