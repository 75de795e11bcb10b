"""CbisExampleGen: a CBIS-DDSM release in, two Examples artifacts out.

`pipeline.pipeline.create_mammography_pipeline` puts it first. It reads the release's
case-description CSVs and images (`components.mammo.cbis.read_release`: the real
release's quirks handled there), fits every mammogram and its ROI masks to
``image_size`` keeping the aspect ratio (`components.mammo.images`), cuts the patch sets
(S10 from the train split, S from the test split: `components.mammo.patches`) and writes

* ``patches``: one record per patch, label = the 5 patch classes;
* ``mammograms``: one record per whole mammogram, label = malignant (any abnormality).

Splits ``train``, ``eval`` and ``test``, by patient (`components.mammo.cbis.pipeline_splits`):
``test`` is the release's own test split, held out for what the card claims; ``eval``
(calibration, thresholds, the blessing) is ``eval_fraction`` of the release's train
patients, stratified by label; ``train`` the rest. Patch sets: ``train_patch_set`` on
train, ``eval_patch_set`` on eval and test. Records: `components.mammo.records`. Output
files are GZIP TFRecords under ``Split-<name>/``, as TFX's ExampleGens write them, so
the Trainers, the Evaluator and the EvaluationReport read them unchanged.
"""

# No `from __future__ import annotations`: the @component decorator reads the real types.
import json
import logging
import os

from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from breastdx_core import contract
from components import folders
from components.mammo import cbis

log = logging.getLogger(__name__)

SUMMARY_FILE = "ingest_summary.json"


def _writers(uri: str) -> dict[str, "object"]:
    import tensorflow as tf

    out = {}
    for split in cbis.SPLITS:
        folder = os.path.join(uri, f"Split-{split}")
        folders.make_folder(folder)
        out[split] = tf.io.TFRecordWriter(
            os.path.join(folder, "data_tfrecord-00000-of-00001.gz"), options="GZIP"
        )
    return out


def _mark(artifact: tfx.types.standard_artifacts.Examples) -> None:
    artifact.split_names = artifact_utils.encode_split_names(list(cbis.SPLITS))
    examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)


def write_records(
    data_root: str,
    patches_uri: str,
    mammograms_uri: str,
    image_size: list[int],
    patch_size: int,
    train_patch_set: str,
    eval_patch_set: str,
    seed: int,
    eval_fraction: float,
) -> dict[str, object]:
    """Reads the release and writes both artifacts' records; returns the counts."""
    from components.mammo import images, patches, records

    abnormalities, problems = cbis.read_release(data_root)
    if not abnormalities:
        raise cbis.CbisError(f"no usable abnormality in {data_root}: {problems[:3]}")
    size = (int(image_size[0]), int(image_size[1]))
    all_mammograms = cbis.mammograms(abnormalities)
    split_of = cbis.pipeline_splits(all_mammograms, eval_fraction, seed)
    patch_writers, image_writers = _writers(patches_uri), _writers(mammograms_uri)
    counts: dict[str, dict[str, int]] = {
        split: {name: 0 for name in contract.CBIS_PATCH_CLASSES} for split in cbis.SPLITS
    }
    mammogram_counts: dict[str, dict[str, int]] = {
        split: {name: 0 for name in records.WHOLE_CLASS_NAMES} for split in cbis.SPLITS
    }
    try:
        for k, mammogram in enumerate(all_mammograms):
            split = split_of[mammogram.patient_id]
            image = images.resize_keep_aspect(images.read_image(mammogram.image_path), size).numpy()
            rois = [
                (images.resize_mask(images.read_mask(a.roi_mask_path), size), a.patch_class)
                for a in mammogram.abnormalities
            ]
            patch_set = train_patch_set if split == "train" else eval_patch_set
            for n, patch in enumerate(
                patches.extract_patches(
                    image,
                    rois,
                    patch_size,
                    patch_set,
                    seed=seed * 1000 + k,
                    source=mammogram.image_id,
                )
            ):
                example = records.to_example(
                    patch.pixels, patch.label, mammogram.patient_id, f"{patch.source}/{n:02d}"
                )
                patch_writers[split].write(example.SerializeToString())
                counts[split][contract.CBIS_PATCH_CLASSES[patch.label]] += 1
            label = int(mammogram.malignant)
            image_writers[split].write(
                records.to_example(
                    image, label, mammogram.patient_id, mammogram.image_id
                ).SerializeToString()
            )
            mammogram_counts[split][records.WHOLE_CLASS_NAMES[label]] += 1
    finally:
        for writer in (*patch_writers.values(), *image_writers.values()):
            writer.close()
    for split in cbis.SPLITS:
        if not sum(mammogram_counts[split].values()):
            where = {"eval": f"train patient held out as eval (eval_fraction {eval_fraction})"}.get(
                split, split
            )
            raise cbis.CbisError(
                f"the release at {data_root} has no {where} mammogram with a readable ROI "
                f"mask; every split is needed"
            )
    summary = {
        "patches": counts,
        "mammograms": mammogram_counts,
        "problems": problems,
        "image_size": list(size),
        "patch_size": patch_size,
        "eval_fraction": eval_fraction,
        "patients": {
            split: sum(1 for s in split_of.values() if s == split) for split in cbis.SPLITS
        },
        "split_design": cbis.SPLIT_DESIGN,
    }
    log.info(
        "CbisExampleGen: mammograms %s; patches %s; %d row(s) skipped",
        mammogram_counts,
        counts,
        len(problems),
    )
    return summary


@tfx.dsl.components.component
def CbisExampleGen(
    patches: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    mammograms: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    data_root: tfx.dsl.components.Parameter[str],
    image_size: tfx.dsl.components.Parameter[str],
    patch_size: tfx.dsl.components.Parameter[int],
    train_patch_set: tfx.dsl.components.Parameter[str],
    eval_patch_set: tfx.dsl.components.Parameter[str],
    seed: tfx.dsl.components.Parameter[int],
    eval_fraction: tfx.dsl.components.Parameter[float],
    input_fingerprint: tfx.dsl.components.Parameter[str] = "",
) -> None:
    """Writes the patch and mammogram records of the release at ``data_root``.

    ``image_size``: "height,width" the mammograms are fitted to; ``eval_fraction``: the
    share of the release's train patients held out as the eval split; ``input_fingerprint``:
    a digest of the release's files (only a cache key: a changed release is read again).
    """
    del input_fingerprint  # part of the cache key, nothing to do with it here
    size = [int(v) for v in image_size.split(",")]
    summary = write_records(
        data_root,
        patches.uri,
        mammograms.uri,
        size,
        patch_size,
        train_patch_set,
        eval_patch_set,
        seed,
        eval_fraction,
    )
    for artifact in (patches, mammograms):
        _mark(artifact)
        with open(os.path.join(artifact.uri, SUMMARY_FILE), "w") as handle:
            json.dump(summary, handle, indent=1)
