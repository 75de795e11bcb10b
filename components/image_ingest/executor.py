"""ImageIngest's executor: image folders -> TFRecords of tf.train.Example + ingest report.

TFX runs `Executor.Do` for the ImageIngest component. Paths are sorted and classified
here (cheap, from names alone); the bytes are read, checked and turned into records
on Beam, in shards of files, so the same code runs on the DirectRunner or Dataflow.
Every file ends as exactly one outcome: ingested, or skipped with a reason.
"""
from __future__ import annotations

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
RECORDS_SUFFIX = ".tfrecord.gz"

ROOT_KEY = "image_root"
LAYOUT_KEY = "layout"
TASK_KEY = "task"
VALIDATION_KEY = "validation"
SHARD_SIZE_KEY = "shard_size"
FINGERPRINT_KEY = "input_fingerprint"
INCLUDE_MASKS_KEY = "include_masks"  # 1: add `mask_raw` (the segmentation variant)

_OUTCOMES = "outcomes"

log = logging.getLogger(__name__)


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


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
    (and, when ``mask`` is not None, its segmentation mask's bytes)."""
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                contract.IMAGE_KEY: _bytes(data),
                contract.LABEL_KEY: _int(candidate.label),
                contract.PATIENT_KEY: _bytes(candidate.patient_id.encode("utf-8")),
                contract.HEIGHT_KEY: _int(info.height),
                contract.WIDTH_KEY: _int(info.width),
                contract.DEPTH_KEY: _int(info.depth),
                contract.SOURCE_PATH_KEY: _bytes(candidate.rel.encode("utf-8")),
            }
        )
    )
    if mask is not None:
        example.features.feature[contract.MASK_KEY].CopyFrom(_bytes(mask))
    return example


def read_candidate(candidate: layouts.Candidate, validation: str,
                   include_masks: bool = False) -> Tuple[bytes, report.Outcome]:
    """Reads and checks one file: (serialized example or b"", its outcome). Never raises
    for a bad file: the outcome carries the reason. With ``include_masks`` the image's
    masks are read, checked and merged into ``mask_raw``."""
    mask = None
    try:
        with tf.io.gfile.GFile(candidate.path, "rb") as handle:
            data = handle.read()
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
                             size=f"{info.height}x{info.width}")
    return example.SerializeToString(), outcome


class _ReadShard(beam.DoFn):
    """Turns a shard of candidates into serialized examples (main output) and outcomes."""

    def __init__(self, validation: str, total: int, include_masks: bool = False):
        self._validation = validation
        self._include_masks = include_masks
        self._total = total
        self._ingested = beam.metrics.Metrics.counter("ImageIngest", "ingested")
        self._skipped = beam.metrics.Metrics.counter("ImageIngest", "skipped")

    def process(self, shard: Sequence[layouts.Candidate]) -> Iterator[Any]:
        skipped = 0
        for candidate in shard:
            serialized, outcome = read_candidate(candidate, self._validation, self._include_masks)
            if serialized:
                yield serialized
            else:
                skipped += 1
            yield beam.pvalue.TaggedOutput(_OUTCOMES, outcome)
        self._ingested.inc(len(shard) - skipped)
        self._skipped.inc(skipped)
        log.info("ImageIngest: read a shard of %d files (%d skipped) of %d", len(shard), skipped, self._total)


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
        outcomes = [report.Outcome(v.rel, False, v.reason, v.detail) for v in verdicts
                    if isinstance(v, layouts.Skipped)]
        log.info("ImageIngest: %s (%s layout): %d files to read, %d skipped by path",
                 root, layout, len(candidates), len(outcomes))

        outcome_path = os.path.join(records.uri, "outcomes")
        with self._make_beam_pipeline() as p:
            results = (
                p
                | "Shards" >> beam.Create(_shards(candidates, shard_size))
                | "Read" >> beam.ParDo(_ReadShard(validation, len(candidates), include_masks)).with_outputs(_OUTCOMES, main="examples")
            )
            _ = results.examples | "Write" >> beam.io.WriteToTFRecord(
                os.path.join(records_dir, RECORDS_PREFIX),
                file_name_suffix=RECORDS_SUFFIX,
                compression_type=beam.io.filesystem.CompressionTypes.GZIP,
            )
            _ = (
                results[_OUTCOMES]
                | "OutcomeJson" >> beam.Map(lambda o: json.dumps(o._asdict()))
                | "WriteOutcomes" >> beam.io.WriteToText(outcome_path, file_name_suffix=".jsonl")
            )

        for path in tf.io.gfile.glob(outcome_path + "*"):
            with tf.io.gfile.GFile(path) as handle:
                outcomes.extend(report.Outcome(**json.loads(line)) for line in handle if line.strip())
            tf.io.gfile.remove(path)

        meta = {"image_root": root, "layout": layout, "task": task.name, "validation": validation,
                "class_names": list(task.class_names)}
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
