"""ImageIngest's executor: image folders -> TFRecords of tf.train.Example + ingest report.

TFX runs `Executor.Do` for the ImageIngest component. Paths are sorted and classified
here (cheap, from names alone); the bytes are read, checked and turned into records
on Beam, in shards of files, so the same code runs on the DirectRunner or Dataflow.
Every file ends as exactly one outcome: ingested, or skipped with a reason.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.image_ingest import image_files, layouts, report
from pipeline import contract

RECORDS_DIR = "tfrecords"
RECORDS_PREFIX = "images"
RECORDS_SUFFIX = ".tfrecord"

ROOT_KEY = "image_root"
LAYOUT_KEY = "layout"
TASK_KEY = "task"
VALIDATION_KEY = "validation"
SHARD_SIZE_KEY = "shard_size"
FINGERPRINT_KEY = "input_fingerprint"
INCLUDE_MASKS_KEY = "include_masks"  # 1: add `mask_raw` (the segmentation variant)


log = logging.getLogger(__name__)


def merge_masks(masks: Sequence[bytes]) -> bytes:
    """One mask from an image's mask files: the file's own bytes when there is one, the
    union (PNG, 0/255) when there are several, b"" when there is none."""
    if len(masks) <= 1:
        return masks[0] if masks else b""
    union = None
    for data in masks:
        grey = np.asarray(Image.open(io.BytesIO(data)).convert("L")) > 127
        union = grey if union is None else union | grey
    buffer = io.BytesIO()
    Image.fromarray((union * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_example(data: bytes, info: image_files.ImageInfo, candidate: layouts.Candidate,
                 mask: Optional[bytes] = None) -> tf.train.Example:
    """The record of one image: its original bytes, label, patient and header facts
    (and, in the segmentation variant, its merged mask as ``mask_raw``).

    Filled field by field: about half the cost of nested constructors (bench/ingest.py).
    """
    example = tf.train.Example()
    feature = example.features.feature
    feature[contract.IMAGE_KEY].bytes_list.value.append(data)
    feature[contract.LABEL_KEY].int64_list.value.append(candidate.label)
    feature[contract.PATIENT_KEY].bytes_list.value.append(candidate.patient_id.encode("utf-8"))
    feature[contract.HEIGHT_KEY].int64_list.value.append(info.height)
    feature[contract.WIDTH_KEY].int64_list.value.append(info.width)
    feature[contract.DEPTH_KEY].int64_list.value.append(info.depth)
    feature[contract.SOURCE_PATH_KEY].bytes_list.value.append(candidate.rel.encode("utf-8"))
    feature[contract.CONTENT_HASH_KEY].bytes_list.value.append(
        (candidate.sha256 or hashlib.sha256(data).hexdigest()).encode("ascii"))
    if mask is not None:
        feature[contract.MASK_KEY].bytes_list.value.append(mask)
    return example


def _read(path: str) -> bytes:
    if "://" in path:  # gs:// and other remote file systems
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    with open(path, "rb") as handle:  # a third faster than GFile for local files
        return handle.read()


def read_candidate(candidate: layouts.Candidate, validation: str,
                   include_masks: bool = False) -> Tuple[bytes, report.Outcome]:
    """Reads and checks one file: (serialized example or b"", its outcome). Never raises
    for a bad file: the outcome carries the reason. With ``include_masks`` the image's
    masks are read, checked and merged into ``mask_raw``."""
    mask = None
    try:
        data = _read(candidate.path)
        info = image_files.inspect(data, validation)
        if include_masks:
            masks = []
            for path in candidate.masks:
                with tf.io.gfile.GFile(path, "rb") as handle:
                    masks.append(handle.read())
                image_files.inspect(masks[-1], validation)
            mask = merge_masks(masks)
    except image_files.ImageError as err:
        return b"", report.Outcome(candidate.rel, False, err.reason, err.detail, candidate.label, candidate.patient_id)
    except (OSError, tf.errors.OpError) as err:
        return b"", report.Outcome(candidate.rel, False, "corrupt", f"unreadable: {err}", candidate.label,
                                   candidate.patient_id)
    example = make_example(data, info, candidate, mask)
    outcome = report.Outcome(candidate.rel, True, label=candidate.label, patient_id=candidate.patient_id,
                             size=f"{info.height}x{info.width}",
                             sha256=candidate.sha256 or hashlib.sha256(data).hexdigest())
    return example.SerializeToString(), outcome


class _IngestShard(beam.DoFn):
    """Reads a shard of candidates, writes their records to one TFRecord file of its
    own (named after the shard, so a retried bundle rewrites the same file) and emits
    one outcome per file.

    Records are written here, uncompressed, rather than by Beam's WriteToTFRecord:
    PNG/JPEG bytes do not compress, GZIP cost 15x the rest of the per-file work, and
    Beam's pure-Python CRC is slower still (bench/ingest.py)."""

    def __init__(self, validation: str, records_dir: str, outcomes_dir: str, total: int,
                 include_masks: bool = False):
        self._validation = validation
        self._outcomes_dir = outcomes_dir
        self._include_masks = include_masks
        self._records_dir = records_dir
        self._total = total
        self._ingested = beam.metrics.Metrics.counter("ImageIngest", "ingested")
        self._skipped = beam.metrics.Metrics.counter("ImageIngest", "skipped")

    def process(self, element: Tuple[int, Sequence[layouts.Candidate]]) -> Iterator[int]:
        index, shard = element
        path = os.path.join(self._records_dir, f"{RECORDS_PREFIX}-{index:05d}{RECORDS_SUFFIX}")
        outcomes = []
        with tf.io.TFRecordWriter(path + ".incomplete") as writer:
            for candidate in shard:
                serialized, outcome = read_candidate(candidate, self._validation, self._include_masks)
                if serialized:
                    writer.write(serialized)
                outcomes.append(json.dumps(outcome._asdict()))
        # Outcomes go to a file per shard too: one Beam element per shard instead of one
        # per file keeps Beam's own cost out of the per-file loop.
        with tf.io.gfile.GFile(os.path.join(self._outcomes_dir, f"outcomes-{index:05d}.jsonl"), "w") as handle:
            handle.write("\n".join(outcomes) + "\n")
        tf.io.gfile.rename(path + ".incomplete", path, overwrite=True)
        skipped = sum(1 for line in outcomes if '"ingested": false' in line)
        self._ingested.inc(len(shard) - skipped)
        self._skipped.inc(skipped)
        log.info("ImageIngest: shard %d: %d files (%d skipped); %d files in all", index, len(shard), skipped,
                 self._total)
        yield index


def _shards(items: List[Any], size: int) -> List[List[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads an image root in any known layout and writes TFRecords plus the report."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        task = contract.get_task(exec_properties[TASK_KEY])
        root = exec_properties[ROOT_KEY]
        layout = exec_properties.get(LAYOUT_KEY) or "auto"
        if layout == "auto":
            layout = layouts.detect(root, task)
        validation = exec_properties.get(VALIDATION_KEY) or "structure"
        shard_size = int(exec_properties.get(SHARD_SIZE_KEY) or 500)
        include_masks = bool(exec_properties.get(INCLUDE_MASKS_KEY) or 0)

        records = artifact_utils.get_single_instance(output_dict["records"])
        records_dir = os.path.join(records.uri, RECORDS_DIR)
        tf.io.gfile.makedirs(records_dir)

        verdicts = list(layouts.scan(root, task, layout))
        candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
        # Exact duplicates, by content: label conflicts out, cross-patient copies kept once.
        candidates, duplicate_copies, duplicates = layouts.deduplicate(candidates)
        verdicts = [v for v in verdicts if isinstance(v, layouts.Skipped)] + duplicate_copies
        outcomes = [report.Outcome(v.rel, False, v.reason, v.detail) for v in verdicts
                    if isinstance(v, layouts.Skipped)]
        for line in report.duplicate_lines(duplicates):
            log.warning("ImageExampleGen: %s", line)
        log.info("ImageIngest: %s (%s layout): %d files to read, %d skipped by path",
                 root, layout, len(candidates), len(outcomes))

        outcomes_dir = os.path.join(records.uri, "outcomes")
        tf.io.gfile.makedirs(outcomes_dir)
        with self._make_beam_pipeline() as p:
            _ = (
                p
                | "Shards" >> beam.Create(list(enumerate(_shards(candidates, shard_size))))
                | "Ingest" >> beam.ParDo(_IngestShard(validation, records_dir, outcomes_dir, len(candidates),
                                                      include_masks))
            )
        for path in sorted(tf.io.gfile.glob(os.path.join(outcomes_dir, "*.jsonl"))):
            with tf.io.gfile.GFile(path) as handle:
                outcomes.extend(report.Outcome(**json.loads(line)) for line in handle if line.strip())
        tf.io.gfile.rmtree(outcomes_dir)

        meta = {"image_root": root, "layout": layout, "task": task.name, "validation": validation,
                "class_names": list(task.class_names), "duplicates": duplicates}
        result = report.build(outcomes, task.class_names, meta)
        with tf.io.gfile.GFile(os.path.join(records.uri, report.REPORT_JSON), "w") as handle:
            json.dump(result, handle, indent=1)
        with tf.io.gfile.GFile(os.path.join(records.uri, report.REPORT_MD), "w") as handle:
            handle.write(report.render_markdown(result))

        records.set_int_custom_property("ingested", result["ingested"])
        records.set_int_custom_property("skipped", result["skipped"])
        records.set_int_custom_property("patients", result["patients"])
        records.set_string_custom_property("layout", layout)
        artifact_utils.get_single_instance(output_dict["records_base"]).value = records_dir
        log.info("ImageIngest: ingested %d, skipped %d %s; report at %s", result["ingested"], result["skipped"],
                 result["skipped_by_reason"], os.path.join(records.uri, report.REPORT_MD))
        if result["ingested"] == 0:
            raise RuntimeError(f"ImageIngest: no image under {root} could be ingested; see "
                               f"{os.path.join(records.uri, report.REPORT_MD)}")
