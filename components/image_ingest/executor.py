"""ImageExampleGen's executor: an image folder -> tf.Examples in patient-grouped splits,
plus the ingest report.

TFX runs `Executor.Do` for the ImageExampleGen component (components/image_ingest/
component.py), the TFX guide's way for a custom file source: a `BaseExampleGenExecutor`
whose `GetInputSourceToExamplePTransform` reads the source. Paths are sorted and
classified once, in `Do` (cheap, from names alone); the bytes are read, checked and
turned into `tf.train.Example`s on Beam, in shards of files, so the same code runs on the
DirectRunner or Dataflow. TFX's base executor then splits them by a hash of
``patient_id`` (the output config) and they are written as GZIP TFRecords, as every
ExampleGen writes them, in a seeded random order of files instead of after TFX's Beam
Reshuffle (which the in-memory runner held whole in memory; `write_order`).
Every file ends as exactly one outcome, ingested or skipped with a reason; the report
(`report.py`) is written into the Examples artifact beside its splits.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen import base_example_gen_executor, utils, write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from breastdx_core import image_files
from components.image_ingest import layouts, report
from breastdx_core import contract

ROOT_KEY = standard_component_specs.INPUT_BASE_KEY  # the image root
LAYOUT_KEY = "layout"
TASK_KEY = "task"
VALIDATION_KEY = "validation"
SHARD_SIZE_KEY = "shard_size"
INCLUDE_MASKS_KEY = "include_masks"  # 1: add `mask_raw` (the segmentation variant)
# A digest of the image tree given from outside (a run parameter on Kubeflow Pipelines,
# whose backend runs no ExampleGen driver): part of the task's cache key there.
TREE_FINGERPRINT_KEY = "tree_fingerprint"
OUTCOMES_DIR = ".outcomes"  # per-shard outcome files, inside the artifact while it is written
WRITE_ORDER_SEED = 13  # the records' order in the split files: random, the same for the same tree


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


def read_example(candidate: layouts.Candidate, validation: str,
                 include_masks: bool = False) -> Tuple[Optional[tf.train.Example], report.Outcome]:
    """Reads and checks one file: (its example or None, its outcome). Never raises
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
        return None, report.Outcome(candidate.rel, False, err.reason, err.detail, candidate.label, candidate.patient_id)
    except (OSError, tf.errors.OpError) as err:
        return None, report.Outcome(candidate.rel, False, "corrupt", f"unreadable: {err}", candidate.label,
                                   candidate.patient_id)
    example = make_example(data, info, candidate, mask)
    outcome = report.Outcome(candidate.rel, True, label=candidate.label, patient_id=candidate.patient_id,
                             size=f"{info.height}x{info.width}",
                             sha256=candidate.sha256 or hashlib.sha256(data).hexdigest())
    return example, outcome


def read_candidate(candidate: layouts.Candidate, validation: str,
                   include_masks: bool = False) -> Tuple[bytes, report.Outcome]:
    """`read_example` with the example serialized (b"" for a skipped file)."""
    example, outcome = read_example(candidate, validation, include_masks)
    return (example.SerializeToString() if example is not None else b""), outcome


class _ReadShard(beam.DoFn):
    """Reads a shard of candidates, emits the tf.Example of every readable image and
    writes one outcome per file to a file of the shard's own (named after the shard, so
    a retried bundle rewrites the same file).

    Outcomes go to a file per shard rather than through Beam: one small file per shard
    keeps Beam's per-element cost out of the per-file loop, and `Do` reads them back
    after the pipeline has finished."""

    def __init__(self, validation: str, outcomes_dir: str, total: int, include_masks: bool = False):
        self._validation = validation
        self._outcomes_dir = outcomes_dir
        self._include_masks = include_masks
        self._total = total
        self._ingested = beam.metrics.Metrics.counter("ImageExampleGen", "ingested")
        self._skipped = beam.metrics.Metrics.counter("ImageExampleGen", "skipped")

    def process(self, element: Tuple[int, Sequence[layouts.Candidate]]) -> Iterator[tf.train.Example]:
        index, shard = element
        outcomes = []
        examples = []
        for candidate in shard:
            example, outcome = read_example(candidate, self._validation, self._include_masks)
            if example is not None:
                examples.append(example)
            outcomes.append(json.dumps(outcome._asdict()))
        path = os.path.join(self._outcomes_dir, f"outcomes-{index:05d}.jsonl")
        with tf.io.gfile.GFile(path + ".incomplete", "w") as handle:
            handle.write("\n".join(outcomes) + "\n")
        tf.io.gfile.rename(path + ".incomplete", path, overwrite=True)
        self._ingested.inc(len(examples))
        self._skipped.inc(len(shard) - len(examples))
        log.info("ImageExampleGen: shard %d: %d files (%d skipped); %d files in all", index, len(shard),
                 len(shard) - len(examples), self._total)
        yield from examples


def write_order(candidates: List[Any], seed: int = WRITE_ORDER_SEED) -> List[Any]:
    """The candidates in a seeded random order, the order their records reach the split
    files: training reads them shuffled without a Beam Reshuffle (TFX's ExampleGen puts
    one before each split's write; the in-memory DirectRunner held every serialized
    example in it, ~30 KB of memory per image, ~8 GB at the real IDC set's size; issue
    13), and the same tree still gives the same files."""
    order = np.random.default_rng(seed).permutation(len(candidates))
    return [candidates[i] for i in order]


@beam.ptransform_fn
def _WriteSplit(examples: beam.PCollection, split_uri: str) -> beam.pvalue.PDone:
    """TFX's `write_split.WriteSplit` for TFRecords without its Reshuffle (see `write_order`)."""
    return (examples
            | "Serialize" >> beam.ParDo(write_split.MaybeSerialize())
            | "Write" >> beam.io.WriteToTFRecord(os.path.join(split_uri, write_split.DEFAULT_FILE_NAME),
                                                 file_name_suffix=".gz"))


def _shards(items: List[Any], size: int) -> List[List[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ImagesToExample(pipeline: beam.Pipeline, candidates: List[layouts.Candidate], validation: str,
                     shard_size: int, outcomes_dir: str, include_masks: bool) -> beam.PCollection:
    """The candidates' images as tf.Examples (read on the workers, shard by shard)."""
    return (
        pipeline
        | "Shards" >> beam.Create(list(enumerate(_shards(candidates, shard_size))))
        # Shards spread over workers; without the reshuffle a runner may fuse them into one.
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(_ReadShard(validation, outcomes_dir, len(candidates), include_masks))
    )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Reads an image root in any known layout into patient-grouped tf.Example splits and
    writes the ingest report into the Examples artifact."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._source: Optional[Dict[str, Any]] = None

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        """TFX's base executor applies this to the pipeline for the one input split;
        `Do` has classified the files first."""
        if self._source is None:
            raise RuntimeError("ImageExampleGen: GetInputSourceToExamplePTransform called outside Do")
        source = self._source

        @beam.ptransform_fn
        def transform(pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str):
            del exec_properties, split_pattern  # the image tree, classified in Do
            # An explicit label: Beam names an unlabelled ptransform_fn after its first
            # argument, here str() of every candidate, copied into every sub-transform's
            # name, the pipeline proto and each bundle's metrics (~110 KB of memory per
            # image, ~30 GB at the real set's 277,524 images; issue 13, bench/scale.py).
            return pipeline | "ImagesToExample" >> _ImagesToExample(
                source["candidates"], source["validation"], source["shard_size"], source["outcomes_dir"],
                source["include_masks"])

        return transform

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

        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        outcomes_dir = os.path.join(examples.uri, OUTCOMES_DIR)
        tf.io.gfile.makedirs(outcomes_dir)

        verdicts = list(layouts.scan(root, task, layout))
        candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
        # Exact duplicates, by content: label conflicts out, cross-patient copies kept once.
        candidates, duplicate_copies, duplicates = layouts.deduplicate(candidates)
        verdicts = [v for v in verdicts if isinstance(v, layouts.Skipped)] + duplicate_copies
        outcomes = [report.Outcome(v.rel, False, v.reason, v.detail) for v in verdicts
                    if isinstance(v, layouts.Skipped)]
        for line in report.duplicate_lines(duplicates):
            log.warning("ImageExampleGen: %s", line)
        log.info("ImageExampleGen: %s (%s layout): %d files to read, %d skipped by path",
                 root, layout, len(candidates), len(outcomes))
        self._source = {"candidates": write_order(candidates), "validation": validation,
                        "shard_size": shard_size, "outcomes_dir": outcomes_dir, "include_masks": include_masks}
        try:
            self._write_examples(output_dict, exec_properties)
        finally:
            self._source = None
        for path in sorted(tf.io.gfile.glob(os.path.join(outcomes_dir, "*.jsonl"))):
            with tf.io.gfile.GFile(path) as handle:
                outcomes.extend(report.Outcome(**json.loads(line)) for line in handle if line.strip())
        tf.io.gfile.rmtree(outcomes_dir)

        meta = {"image_root": root, "layout": layout, "task": task.name, "validation": validation,
                "class_names": list(task.class_names), "duplicates": duplicates}
        result = report.build(outcomes, task.class_names, meta)
        with tf.io.gfile.GFile(os.path.join(examples.uri, report.REPORT_JSON), "w") as handle:
            json.dump(result, handle, indent=1)
        with tf.io.gfile.GFile(os.path.join(examples.uri, report.REPORT_MD), "w") as handle:
            handle.write(report.render_markdown(result))

        examples.set_int_custom_property("ingested", result["ingested"])
        examples.set_int_custom_property("skipped", result["skipped"])
        examples.set_int_custom_property("patients", result["patients"])
        examples.set_string_custom_property("layout", layout)
        log.info("ImageExampleGen: ingested %d, skipped %d %s; report at %s", result["ingested"], result["skipped"],
                 result["skipped_by_reason"], os.path.join(examples.uri, report.REPORT_MD))
        if result["ingested"] == 0:
            raise RuntimeError(f"ImageExampleGen: no image under {root} could be ingested; see "
                               f"{os.path.join(examples.uri, report.REPORT_MD)}")

    def _write_examples(self, output_dict: Dict[str, List[Any]], exec_properties: Dict[str, Any]) -> None:
        """TFX 1.16's `BaseExampleGenExecutor.Do`, writing each split with `_WriteSplit`
        (no Reshuffle: the records come in `write_order` already)."""
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        artifacts = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(artifacts).split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config))
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY,
                                          example_gen_pb2.FILE_FORMAT_UNSPECIFIED)
        with self._make_beam_pipeline() as pipeline:
            for split_name, examples in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = examples | f"WriteSplit[{split_name}]" >> _WriteSplit(
                    artifact_utils.get_split_uri(artifacts, split_name))
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        for artifact in artifacts:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))
