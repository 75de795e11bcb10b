"""Scoring a split with an exported model: the one scoring function of the project.

The EvaluationReport component, `breastdx summary` (pipeline/summary.py), `breastdx
report` and the model lab call `score_split`: it reads an ExampleGen split's records
(original encoded bytes, labels, patient ids) and runs the SavedModel's
``serving_examples`` signature, the Transform graph inside, as serving does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from breastdx_core import contract

BATCH = 128


@dataclasses.dataclass
class Scores:
    """One split scored: labels [n] int (class index), probabilities [n, k], positive [n]
    (P(positive class)), ood [n] (None when the model has no ``ood_score``), patients [n]."""

    labels: np.ndarray
    probabilities: np.ndarray
    positive: np.ndarray
    ood: np.ndarray | None
    patients: np.ndarray
    paths: np.ndarray | None = (
        None  # [n] the files' paths under the image root (slide context reads x/y)
    )

    def xy(self) -> np.ndarray | None:
        """[n, 2] the patches' x/y in pixels from their file names (IDC), or None where a
        name carries none (`breastdx_core.slide_context.patch_xy`)."""
        from breastdx_core.slide_context import patch_xy

        if self.paths is None:
            return None
        found = [
            patch_xy(p.decode("utf-8") if isinstance(p, bytes) else str(p)) for p in self.paths
        ]
        return (
            None
            if any(f is None for f in found) or not found
            else np.asarray(found, dtype=np.float64)
        )

    def binary(self, positive_index: int):
        """(labels 0/1, positive scores, patient ids): what the report's statistics take."""
        return (self.labels == positive_index).astype(int), self.positive, self.patients


def split_records(examples_uri: str, split: str) -> list[str]:
    """The record files of ``split`` in an Examples artifact (TFX's ``Split-<name>`` folders)."""
    return sorted(
        tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    )  # gs:// on a cluster


def _records(examples_uri: str, split: str, limit: int | None) -> tf.data.Dataset:
    files = split_records(examples_uri, split)
    if not files:
        raise ValueError(
            f"no records of split {split!r} in {examples_uri} (expected Split-{split}/*)"
        )
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return records.take(limit) if limit else records


def score_split(
    model_dir: str, examples_uri: str, split: str, limit: int | None = None, model=None
) -> Scores:
    """Scores ``split`` (its first ``limit`` records if given) with ``model_dir``'s
    ``serving_examples`` signature (or the already loaded ``model``)."""
    model = model or tf.saved_model.load(model_dir)
    serve = model.signatures[contract.SIGNATURE_EXAMPLES]
    spec = {
        contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        contract.PATIENT_KEY: tf.io.FixedLenFeature([], tf.string),
        contract.SOURCE_PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    labels, probabilities, positive, ood, patients, paths = [], [], [], [], [], []
    for batch in _records(examples_uri, split, limit).batch(BATCH):
        parsed = tf.io.parse_example(batch, spec)
        outputs = serve(**{contract.SERVING_INPUT_EXAMPLES: batch})
        labels.append(parsed[contract.LABEL_KEY].numpy())
        patients.append(parsed[contract.PATIENT_KEY].numpy())
        paths.append(parsed[contract.SOURCE_PATH_KEY].numpy())
        probabilities.append(outputs[contract.OUTPUT_PROBABILITIES].numpy())
        positive.append(outputs[contract.OUTPUT_POSITIVE].numpy())
        if contract.OUTPUT_OOD in outputs:
            ood.append(outputs[contract.OUTPUT_OOD].numpy())
    if not labels:
        raise ValueError(f"no records in split {split!r} of {examples_uri}")
    return Scores(
        np.concatenate(labels).astype(int),
        np.concatenate(probabilities),
        np.concatenate(positive),
        np.concatenate(ood) if ood else None,
        np.concatenate(patients),
        np.concatenate(paths),
    )


def split_images(examples_uri: str, split: str, limit: int | None = None) -> Iterator[bytes]:
    """The encoded images of ``split`` as stored (the input contract is measured on them)."""
    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    for batch in _records(examples_uri, split, limit).batch(BATCH):
        yield from tf.io.parse_example(batch, spec)[contract.IMAGE_KEY].numpy().tolist()
