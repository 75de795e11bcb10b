"""The Trainer's input side: batches from Transform's output, augmentation, class weights.

Called by `trainer_module.run_fn`, `tuning.tuner_fn` and the model lab. Augmentation
lives here, on the train split only, never in the Transform graph that serving shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from breastdx_core import contract
from components.trainer import stain
from components.trainer.sections import TrainerSettings


def _augmenter(seed: int) -> keras.Sequential:
    """Rotation +-20 degrees, zoom 1.0-1.2 (zoom in only), horizontal and vertical flips."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(20 / 360, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom((-0.2, 0.0), fill_mode="reflect", seed=seed),
        ],
        name="augment",
    )


def train_augmentation(settings: TrainerSettings) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """The train split's augmentation of a [batch, h, w, 3] batch in [0, 1], or None when the
    settings turn all of it off: the geometric `_augmenter` (``augment``), then HED stain
    jitter (``stain_jitter``) and colour jitter (``color_jitter``; `stain`). One function for
    the Trainer and bench/idc_budget.py, so a benchmark trains what the pipeline trains."""
    training = settings.training
    seed = settings.task.seed
    geometric = _augmenter(seed) if training.augment else None
    jitter, colour = float(training.stain_jitter), float(training.color_jitter)
    if geometric is None and jitter <= 0 and colour <= 0:
        return None

    def augment(images: tf.Tensor) -> tf.Tensor:
        if geometric is not None:
            images = geometric(images, training=True)
        images = stain.hed_jitter(images, jitter, seed=seed)
        return stain.color_jitter(images, colour, seed=seed)

    return augment


def input_fn(
    file_pattern: list[str],
    data_accessor: tfx.components.DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    train: bool,
    settings: TrainerSettings,
    whole_split: bool = False,
) -> tf.data.Dataset:
    """Batches of (features, label) from transformed examples; the train split is
    shuffled and (`train_augmentation`) augmented, which is why
    augmentation lives here and not in the Transform graph that serving shares.

    ``whole_split``: one pass over the files, in order (validation on the whole eval
    split, scoring). Otherwise the batches repeat and are shuffled, the eval split too:
    validation on a few batches then samples every patient, not the first files' one.
    """
    seed = settings.task.seed
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size,
            label_key=contract.TRANSFORMED_LABEL_KEY,
            shuffle=not whole_split,
            shuffle_seed=seed,
            num_epochs=1 if whole_split else None,
        ),
        tf_transform_output.transformed_metadata.schema,
    )
    augment = train_augmentation(settings) if train else None
    if augment is not None:

        def augmented(features, label):
            image = augment(features[contract.TRANSFORMED_IMAGE_KEY])
            return {**features, contract.TRANSFORMED_IMAGE_KEY: image}, label

        dataset = dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def class_counts(file_pattern: Sequence[str], num_classes: int) -> np.ndarray:
    """Images per class in transformed TFRecords (for the class weights)."""
    files = [f for pattern in file_pattern for f in tf.io.gfile.glob(pattern)]
    spec = {contract.TRANSFORMED_LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    labels = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(1024)
        .map(lambda x: tf.io.parse_example(x, spec)[contract.TRANSFORMED_LABEL_KEY])
    )
    counts = np.zeros(num_classes, dtype=np.int64)
    for batch in labels.as_numpy_iterator():
        counts += np.bincount(batch, minlength=num_classes)[:num_classes]
    return counts


def class_weights(counts: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights, 1.0 on average over examples; absent classes get 1."""
    total = counts.sum()
    return {i: (float(total) / (len(counts) * c) if c else 1.0) for i, c in enumerate(counts)}
