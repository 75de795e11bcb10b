"""ImageExampleGen's executor: an image folder -> tf.Examples in patient-grouped splits,
plus the ingest report.

TFX runs `Executor.Do` for the ImageExampleGen component (components/image_ingest/
component.py), the TFX guide's way for a custom file source: a `BaseExampleGenExecutor`
that writes the ``Examples`` artifact as every ExampleGen does (GZIP TFRecords of
serialized tf.Examples, one folder per split, split by TFX's own partition function on
``patient_id``). Paths are sorted and classified once, in `Do` (cheap, from names alone)
and put in a seeded random order (`write_order`); the bytes are read, checked, hashed,
turned into tf.Examples and written on Beam, one element per shard of files, so the same
code runs on the DirectRunner or Dataflow. Each shard writes its own record file per split
(`_ReadShard`): Beam carries shard numbers, not images, and no file list travels in the
Beam graph (per-image Beam elements, TFX's Reshuffle before the write and the
file list pickled into the graph cost time and memory per image at the real set's size).
Exact duplicates are resolved afterwards from the hashes (`layouts.resolve_duplicates`),
and the few record files holding a copy left out are rewritten without it: each file is
read once.
Every file ends as exactly one outcome, ingested or skipped with a reason; the report
(`report.py`) is written into the Examples artifact beside its splits.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.components.example_gen import base_example_gen_executor, utils, write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from breastdx_core import contract, image_files
from components import compat, folders
from components.image_ingest import layouts, near_duplicates, report, splits
from components.image_ingest.example_encoder import serialize_example

ROOT_KEY = standard_component_specs.INPUT_BASE_KEY  # the image root
LAYOUT_KEY = "layout"
TASK_KEY = "task"
VALIDATION_KEY = "validation"
SHARD_SIZE_KEY = "shard_size"
INCLUDE_MASKS_KEY = "include_masks"  # 1: add `mask_raw` (the segmentation variant)
# A digest of the image tree given from outside (a run parameter on Kubeflow Pipelines,
# whose backend runs no ExampleGen driver): part of the task's cache key there.
TREE_FINGERPRINT_KEY = "tree_fingerprint"
MIN_EVAL_KEY = "min_eval_patients"  # > 0: patient-stratified splits (splits.py)
NEAR_DUP_KEY = (
    "near_duplicate_bits"  # >= 0: pHash near-duplicates share a split (near_duplicates.py)
)
OUTCOMES_DIR = ".outcomes"  # scratch: shard inputs, record and outcome files, inside the artifact while it is written
WRITE_ORDER_SEED = 13  # the records' order in the split files: random, the same for the same tree
# GZIP, as every TFX ExampleGen writes its splits, at deflate level 0 (stored blocks): the
# records are mostly PNG/JPEG bytes, which deflate shrinks by 0.6 % at 40x the CPU time
# (~110 us of 5 KB images at levels 1 and 6, bench/ingest.py); every GZIP reader (tf.data,
# Beam's ReadFromTFRecord under StatisticsGen and Transform) reads level 0 as any other.
GZIP_LEVEL = 0
RECORD_OPTIONS = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=GZIP_LEVEL)


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


def _read(path: str) -> bytes:
    if "://" in path:  # gs:// and other remote file systems
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    with open(path, "rb") as handle:  # a third faster than GFile for local files
        return handle.read()


def read_candidate(
    candidate: layouts.Candidate, validation: str, include_masks: bool = False
) -> tuple[bytes, report.Outcome]:
    """Reads and checks one file: (its serialized tf.Example, or b"" for a skipped file;
    its outcome). Never raises for a bad file: the outcome carries the reason. With
    ``include_masks`` the image's masks are read, checked and merged into ``mask_raw``."""
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
        return b"", report.Outcome(
            candidate.rel, False, err.reason, err.detail, candidate.label, candidate.patient_id
        )
    except (OSError, tf.errors.OpError) as err:
        return b"", report.Outcome(
            candidate.rel,
            False,
            "corrupt",
            f"unreadable: {err}",
            candidate.label,
            candidate.patient_id,
        )
    sha256 = candidate.sha256 or hashlib.sha256(data).hexdigest()
    outcome = report.Outcome(
        candidate.rel,
        True,
        label=candidate.label,
        patient_id=candidate.patient_id,
        size=f"{info.height}x{info.width}",
        sha256=sha256,
    )
    return serialize_example(data, info, candidate, mask, sha256), outcome


def read_example(
    candidate: layouts.Candidate, validation: str, include_masks: bool = False
) -> tuple[tf.train.Example | None, report.Outcome]:
    """`read_candidate` with the record parsed (None for a skipped file)."""
    serialized, outcome = read_candidate(candidate, validation, include_masks)
    return (tf.train.Example.FromString(serialized) if serialized else None), outcome


def _split_names(
    input_config: example_gen_pb2.Input, output_config: example_gen_pb2.Output
) -> list[str]:
    names = utils.generate_output_split_names(input_config, output_config)
    if not output_config.split_config.splits and len(names) != 1:
        raise ValueError(
            "ImageExampleGen reads one image tree: give the splits in output_config "
            f"(hash buckets), not {len(names)} input splits"
        )
    return names


class _Splitter:
    """The split of each record, by TFX's own partition function (`BaseExampleGenExecutor`'s
    ``_PartitionFn``: SHA-256 of the partition feature, bucketed as the output config
    says), so a patient lands in the split any TFX ExampleGen would put it in. When the
    partition feature is ``patient_id`` (the pipeline's split config) the answer is kept
    per patient: one parse and hash per patient instead of one per image."""

    def __init__(self, output_config_json: str, assignment: dict[str, int] | None = None):
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(output_config_json, output_config)
        self._config = output_config.split_config
        self._buckets = list(
            itertools.accumulate(int(split.hash_buckets) for split in self._config.splits)
        )
        self._feature = (
            self._config.partition_feature_name
            if self._config.HasField("partition_feature_name")
            else ""
        )
        # Patient-stratified splits (`splits.assign`, decided once in `Do`) are looked up;
        # a patient they do not name falls back to the hash.
        self._known: dict[str, int] = (
            dict(assignment or {}) if self._feature == contract.PATIENT_KEY else {}
        )

    def _partition(self, record: bytes) -> int:
        # TFX hashes a tf.Example's deterministic serialization: `serialize_example`'s bytes
        # are that serialization; with a partition feature, the parsed record as TFX has it.
        parsed = tf.train.Example.FromString(record) if self._feature else record
        return compat.partition(parsed, len(self._buckets), self._buckets, self._config)

    def __call__(self, record: bytes, candidate: layouts.Candidate) -> int:
        if not self._buckets:
            return 0  # no output splits: the one input split
        if self._feature != contract.PATIENT_KEY:
            return self._partition(record)
        split = self._known.get(candidate.patient_id)
        if split is None:
            split = self._known[candidate.patient_id] = self._partition(record)
        return split


def stratified_assignment(
    candidates: Sequence[layouts.Candidate], exec_properties: dict[str, Any], classes: int
) -> tuple[dict[str, int] | None, list[str]]:
    """The patient-stratified split of every patient (`splits.assign`), from the paths'
    labels and patient ids alone (one pass, before any file is read), when the exec
    properties ask for it and the splits are by patient; else (None, [])."""
    min_eval = int(exec_properties.get(MIN_EVAL_KEY) or 0)
    near = exec_properties.get(NEAR_DUP_KEY)
    near = -1 if near is None else int(near)
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
    )
    config = output_config.split_config
    if (
        (min_eval <= 0 and near < 0)
        or not config.splits
        or config.partition_feature_name != contract.PATIENT_KEY
    ):
        return None, []
    counts: dict[str, list[int]] = {}
    for candidate in candidates:
        counts.setdefault(candidate.patient_id, [0] * classes)[candidate.label] += 1
    buckets = [(s.name, int(s.hash_buckets)) for s in config.splits]
    if min_eval > 0:
        assignment, notes = splits.assign(counts, buckets, min_eval)
    else:  # TFX's hash buckets, per patient
        edges = list(itertools.accumulate(b for _, b in buckets))
        assignment = {p: bisect.bisect(edges, splits.patient_key(p) % edges[-1]) for p in counts}
        notes = []
    if near >= 0:
        assignment, more = near_duplicate_groups(candidates, assignment, near)
        notes += more
    return assignment, notes


def near_duplicate_groups(
    candidates: Sequence[layouts.Candidate], assignment: dict[str, int], max_bits: int
) -> tuple[dict[str, int], list[str]]:
    """`near_duplicates` over the files (one read and decode each, up to
    `near_duplicates.MAX_IMAGES` files): every group's patients share a split. Returns the
    assignment and the report's lines (groups listed, or why the pass did not run)."""
    if len(candidates) > near_duplicates.MAX_IMAGES:
        return assignment, [
            f"near-duplicates: not searched ({len(candidates)} images, more than the "
            f"{near_duplicates.MAX_IMAGES} the pre-split pass reads)"
        ]
    found, _ = near_duplicates.find(((c.rel, _read(c.path)) for c in candidates), max_bits)
    patient_of = {c.rel: c.patient_id for c in candidates}
    assignment, listed = near_duplicates.merge_patients(assignment, patient_of, found)
    if not listed:
        return assignment, []
    lines = [
        f"near-duplicates (pHash within {max_bits} bits): {len(listed)} group(s) of "
        f"{sum(len(g['images']) for g in listed)} images, each kept in one split"
    ]
    moved = [g for g in listed if len(g["splits_before"]) > 1]
    if moved:
        lines[0] += f"; {len(moved)} spanned splits and were moved together"
    lines += [
        f"near-duplicates: {', '.join(g['images'][:6])}{' ...' if len(g['images']) > 6 else ''}"
        for g in listed[:20]
    ]
    return assignment, lines


def _shard_path(scratch: str, index: int) -> str:
    return os.path.join(scratch, f"shard-{index:05d}.json")


def _write_shard_inputs(candidates: list[layouts.Candidate], shard_size: int, scratch: str) -> int:
    """The candidates, shard by shard, as small JSON files in the scratch folder (each
    shard's worker reads its own): the file list stays out of the Beam graph, where Beam
    pickled it (dill, then bz2) into the pipeline proto and every bundle's descriptor."""
    shards = _shards(candidates, shard_size)
    for index, shard in enumerate(shards):
        with tf.io.gfile.GFile(
            _shard_path(scratch, index), "w"
        ) as handle:  # one write: GFile's are slow
            handle.write(
                json.dumps(
                    [[c.path, c.rel, c.label, c.patient_id, list(c.masks), c.sha256] for c in shard]
                )
            )
    return len(shards)


def _read_shard_inputs(scratch: str, index: int) -> list[layouts.Candidate]:
    with tf.io.gfile.GFile(_shard_path(scratch, index)) as handle:
        return [
            layouts.Candidate(path, rel, label, patient_id, tuple(masks), sha256)
            for path, rel, label, patient_id, masks, sha256 in json.load(handle)
        ]


def _record_file(index: int, shards: int) -> str:
    return f"{write_split.DEFAULT_FILE_NAME}-{index:05d}-of-{shards:05d}.gz"


class _ReadShard(beam.DoFn):
    """Reads a shard of files and writes it: the tf.Example of every readable image into
    the shard's GZIP TFRecord file of its split, and one outcome per file into a file of
    the shard's own. Every file is named after the shard and written under a temporary
    name first, so a retried bundle rewrites the same files.

    Beam sees one element per shard, not per image: the per-element cost of Beam's
    Partition, serialization and file sink (and of TFX's Reshuffle, which the in-memory
    runner held whole) stays out of the per-file loop. `Do` reads the outcomes back after
    the pipeline has finished."""

    def __init__(
        self,
        validation: str,
        scratch: str,
        split_uris: Sequence[str],
        output_config_json: str,
        shards: int,
        total: int,
        include_masks: bool = False,
        assignment: dict[str, int] | None = None,
    ):
        self._assignment = assignment
        self._validation = validation
        self._scratch = scratch
        self._split_uris = list(split_uris)
        self._output_config_json = output_config_json
        self._shards = shards
        self._include_masks = include_masks
        self._total = total
        self._ingested = beam.metrics.Metrics.counter("ImageExampleGen", "ingested")
        self._skipped = beam.metrics.Metrics.counter("ImageExampleGen", "skipped")
        self._splitter: _Splitter | None = None

    def setup(self):
        self._splitter = _Splitter(self._output_config_json, self._assignment)

    def process(self, index: int) -> Iterator[int]:
        shard = _read_shard_inputs(self._scratch, index)
        name = _record_file(index, self._shards)
        writers: dict[int, tf.io.TFRecordWriter] = {}
        outcomes = []  # [Outcome fields, split index or -1]
        ingested = 0
        try:
            for candidate in shard:
                record, outcome = read_candidate(candidate, self._validation, self._include_masks)
                split = -1
                if record:
                    split = self._splitter(record, candidate)
                    writer = writers.get(split)
                    if writer is None:
                        writer = writers[split] = tf.io.TFRecordWriter(
                            os.path.join(self._scratch, f"{split}-{name}"), RECORD_OPTIONS
                        )
                    writer.write(record)
                    ingested += 1
                outcomes.append((outcome, split))
        finally:
            for writer in writers.values():
                writer.close()
        for split in writers:
            tf.io.gfile.rename(
                os.path.join(self._scratch, f"{split}-{name}"),
                os.path.join(self._split_uris[split], name),
                overwrite=True,
            )
        path = os.path.join(self._scratch, f"outcomes-{index:05d}.json")
        with tf.io.gfile.GFile(path + ".incomplete", "w") as handle:
            handle.write(json.dumps(outcomes))
        tf.io.gfile.rename(path + ".incomplete", path, overwrite=True)
        self._ingested.inc(ingested)
        self._skipped.inc(len(shard) - ingested)
        log.info(
            "ImageExampleGen: shard %d of %d: %d files (%d skipped); %d files in all",
            index + 1,
            self._shards,
            len(shard),
            len(shard) - ingested,
            self._total,
        )
        yield index


def _drop_records(
    drop: dict[str, Any],
    places: Sequence[tuple[int, int]],
    shards: int,
    split_uris: Sequence[str],
    scratch: str,
) -> None:
    """Rewrites the record files that hold a left-out duplicate (``places``: (shard,
    split) of each) without it. Duplicates are rare: most runs rewrite nothing, and the
    files are read once instead of twice (once to hash them all before splitting)."""
    for index, split in sorted(set(places)):
        path = os.path.join(split_uris[split], _record_file(index, shards))
        kept = [
            record.numpy()
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP")
            if tf.train.Example.FromString(record.numpy())
            .features.feature[contract.SOURCE_PATH_KEY]
            .bytes_list.value[0]
            .decode("utf-8")
            not in drop
        ]
        temporary = os.path.join(scratch, f"{split}-{os.path.basename(path)}")
        with tf.io.TFRecordWriter(temporary, RECORD_OPTIONS) as writer:
            for record in kept:
                writer.write(record)
        if kept:
            tf.io.gfile.rename(temporary, path, overwrite=True)
        else:
            tf.io.gfile.remove(path)


def write_order(candidates: list[Any], seed: int = WRITE_ORDER_SEED) -> list[Any]:
    """The candidates in a seeded random order, the order their records reach the split
    files: training reads them shuffled without a Beam Reshuffle (TFX's ExampleGen puts
    one before each split's write; the in-memory DirectRunner held every serialized
    example in it, ~30 KB of memory per image, ~8 GB at the real IDC set's size; issue
    13), and the same tree still gives the same files."""
    order = np.random.default_rng(seed).permutation(len(candidates))
    return [candidates[i] for i in order]


def _shards(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def build_pipeline(pipeline: beam.Pipeline, shards: int, read: _ReadShard) -> beam.PCollection:
    """The Beam graph: shard numbers in, each shard read and written by ``read``. Its size
    does not depend on the number of files (tests/test_ingest_labels.py)."""
    return (
        pipeline
        | "Shards" >> beam.Create(list(range(shards)))
        # Shards spread over workers; without the reshuffle a runner may fuse them into one.
        | "Spread" >> beam.Reshuffle()
        | "ReadAndWrite" >> beam.ParDo(read)
    )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Reads an image root in any known layout into patient-grouped tf.Example splits and
    writes the ingest report into the Examples artifact."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        """Not used: `Do` reads and writes each shard of files in one step (`_ReadShard`)
        instead of handing TFX's base executor one Beam element per image."""
        raise NotImplementedError("ImageExampleGen writes its splits in Do (see _ReadShard)")

    def Do(
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        task = contract.get_task(exec_properties[TASK_KEY])
        root = exec_properties[ROOT_KEY]
        layout = exec_properties.get(LAYOUT_KEY) or "auto"
        if layout == "auto":
            layout = layouts.detect(root, task)
        validation = exec_properties.get(VALIDATION_KEY) or "structure"
        shard_size = int(exec_properties.get(SHARD_SIZE_KEY) or 500)
        include_masks = bool(exec_properties.get(INCLUDE_MASKS_KEY) or 0)

        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        scratch = os.path.join(examples.uri, OUTCOMES_DIR)
        folders.make_folder(scratch)

        verdicts = list(layouts.scan(root, task, layout))
        candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
        outcomes = [
            report.Outcome(v.rel, False, v.reason, v.detail)
            for v in verdicts
            if isinstance(v, layouts.Skipped)
        ]
        del verdicts
        log.info(
            "ImageExampleGen: %s (%s layout): %d files to read, %d skipped by path",
            root,
            layout,
            len(candidates),
            len(outcomes),
        )
        total = len(candidates)
        assignment, split_notes = stratified_assignment(
            candidates, exec_properties, len(task.class_names)
        )
        for note in split_notes:
            log.warning("ImageExampleGen: %s", note)
        shards = _write_shard_inputs(write_order(candidates), shard_size, scratch)
        del candidates
        split_uris = self._write_examples(
            output_dict,
            exec_properties,
            shards,
            total,
            validation,
            scratch,
            include_masks,
            assignment,
        )
        read = []  # (outcome, shard, split) of every file read
        for index in range(shards):
            with tf.io.gfile.GFile(os.path.join(scratch, f"outcomes-{index:05d}.json")) as handle:
                read.extend(
                    (report.Outcome(*fields), index, split)
                    for fields, split in json.loads(handle.read())
                )
        # Exact duplicates, by content (the SHA-256 each shard computed as it read the files):
        # label conflicts out, cross-patient copies kept once (`layouts.resolve_duplicates`).
        drop, duplicates = layouts.resolve_duplicates(
            [
                layouts.Candidate("", o.rel, o.label, o.patient_id, (), o.sha256)
                for o, _, _ in read
                if o.ingested
            ]
        )
        for line in report.duplicate_lines(duplicates):
            log.warning("ImageExampleGen: %s", line)
        if drop:
            _drop_records(
                drop,
                [(index, split) for o, index, split in read if o.rel in drop],
                shards,
                split_uris,
                scratch,
            )
        outcomes.extend(
            o
            if o.rel not in drop
            else report.Outcome(o.rel, False, drop[o.rel].reason, drop[o.rel].detail)
            for o, _, _ in read
        )
        del read
        for uri in split_uris:  # a split no record fell into: one empty file, as Beam's sink writes
            if not tf.io.gfile.listdir(uri):
                tf.io.TFRecordWriter(os.path.join(uri, _record_file(0, 1)), RECORD_OPTIONS).close()
        tf.io.gfile.rmtree(scratch)

        meta = {
            "image_root": root,
            "layout": layout,
            "task": task.name,
            "validation": validation,
            "class_names": list(task.class_names),
            "duplicates": duplicates,
            "split_method": (
                "patient-stratified (splits.py)"
                if int(exec_properties.get(MIN_EVAL_KEY) or 0) > 0
                else "hash buckets of patient_id"
            ),
            "split_notes": split_notes,
        }
        result = report.build(outcomes, task.class_names, meta)
        with tf.io.gfile.GFile(os.path.join(examples.uri, report.REPORT_JSON), "w") as handle:
            # one write, compact: json.dump's many small writes to a GFile and the indenting
            # (pure-Python) encoder cost ~30 us per file at 100k files
            handle.write(json.dumps(result))
        with tf.io.gfile.GFile(os.path.join(examples.uri, report.REPORT_MD), "w") as handle:
            handle.write(report.render_markdown(result))

        examples.set_int_custom_property("ingested", result["ingested"])
        examples.set_int_custom_property("skipped", result["skipped"])
        examples.set_int_custom_property("patients", result["patients"])
        examples.set_string_custom_property("layout", layout)
        log.info(
            "ImageExampleGen: ingested %d, skipped %d %s; report at %s",
            result["ingested"],
            result["skipped"],
            result["skipped_by_reason"],
            os.path.join(examples.uri, report.REPORT_MD),
        )
        if result["ingested"] == 0:
            raise RuntimeError(
                f"ImageExampleGen: no image under {root} could be ingested; see "
                f"{os.path.join(examples.uri, report.REPORT_MD)}"
            )

    def _write_examples(
        self,
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
        shards: int,
        total: int,
        validation: str,
        scratch: str,
        include_masks: bool,
        assignment: dict[str, int] | None = None,
    ) -> list[str]:
        """What TFX 1.16's `BaseExampleGenExecutor.Do` writes (split names, GZIP TFRecords
        of serialized tf.Examples in ``Split-<name>/``, payload and file format), each
        shard of files written by `_ReadShard`."""
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
        )
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
        )
        artifacts = output_dict[standard_component_specs.EXAMPLES_KEY]
        names = _split_names(input_config, output_config)
        artifact_utils.get_single_instance(
            artifacts
        ).split_names = artifact_utils.encode_split_names(names)
        split_uris = [artifact_utils.get_split_uri(artifacts, name) for name in names]
        for uri in split_uris:
            folders.make_folder(uri)
        file_format = exec_properties.get(
            standard_component_specs.OUTPUT_FILE_FORMAT_KEY, example_gen_pb2.FILE_FORMAT_UNSPECIFIED
        )
        read = _ReadShard(
            validation,
            scratch,
            split_uris,
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
            shards,
            total,
            include_masks,
            assignment,
        )
        with self._make_beam_pipeline() as pipeline:
            build_pipeline(pipeline, shards, read)
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        for artifact in artifacts:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(
                    artifact, write_split.to_file_format_str(file_format)
                )
        return split_uris
