"""ImageExampleGen's executor on Beam: records, the ingest report, patient-grouped splits."""

import collections
import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from breastdx_core import configs, contract
from components.image_ingest import component, executor, report
from pipeline import synthetic
from pipeline.pipeline import split_config


def _parse(path, compression="GZIP"):
    out = []
    for record in tf.data.TFRecordDataset(glob.glob(path), compression_type=compression):
        out.append(tf.train.Example.FromString(record.numpy()))
    return out


def _feature(example, key):
    f = example.features.feature[key]
    return f.bytes_list.value[0] if f.HasField("bytes_list") else f.int64_list.value[0]


def _run_example_gen(root, out, task="idc", shard_size=7, **extra):
    """ImageExampleGen's executor as TFX runs it: exec properties from the component's spec."""
    config = configs.load(env={}, workdir=str(out))
    gen = component.ImageExampleGen(
        image_root=root,
        task=task,
        output_config=split_config(config),
        shard_size=shard_size,
        **extra,
    )
    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    properties = {k: v for k, v in gen.exec_properties.items() if v is not None}
    properties = {
        k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v
        for k, v in properties.items()
    }
    executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, properties)
    return examples


@pytest.fixture(scope="module")
def ingested(idc_tree, tmp_path_factory):
    examples = _run_example_gen(idc_tree.root, tmp_path_factory.mktemp("ingest"))
    with open(os.path.join(examples.uri, report.REPORT_JSON)) as handle:
        return examples, json.load(handle)


def _all_examples(examples):
    return [
        e
        for split in ("train", "eval", "test")
        for e in _parse(os.path.join(examples.uri, f"Split-{split}", "*"))
    ]


def test_records_keep_the_original_bytes(ingested, idc_tree):
    examples = _all_examples(ingested[0])
    assert examples
    for example in examples:
        rel = _feature(example, contract.SOURCE_PATH_KEY).decode()
        with open(os.path.join(idc_tree.root, rel), "rb") as handle:
            assert _feature(example, contract.IMAGE_KEY) == handle.read()
        pid, label, _ = rel.split("/")
        assert _feature(example, contract.PATIENT_KEY).decode() == pid
        assert _feature(example, contract.LABEL_KEY) == int(label)
        assert _feature(example, contract.DEPTH_KEY) == 3
        assert 20 <= _feature(example, contract.HEIGHT_KEY) <= 50


def test_report_accounts_for_every_file(ingested, idc_tree):
    records, result = ingested
    assert result["entries"] == idc_tree.files
    assert result["ingested"] + result["skipped"] == idc_tree.files
    assert result["ingested"] == idc_tree.images
    reasons = {s["path"]: s["reason"] for s in result["skipped_files"]}
    assert reasons == idc_tree.quirks  # the truncated PNG and the zero-byte file included
    assert (
        sum(sum(v for k, v in c.items() if k != "skipped") for c in result["per_patient"].values())
        == result["ingested"]
    )
    assert records.get_int_custom_property("skipped") == len(idc_tree.quirks)
    text = open(os.path.join(records.uri, report.REPORT_MD)).read()
    assert "corrupt" in text and f"ingested **{idc_tree.images}**" in text


def test_splits_group_by_patient(ingested):
    examples, result = ingested
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval", "test"]
    where = collections.defaultdict(set)
    total = 0
    for split in ("train", "eval", "test"):
        for example in _parse(os.path.join(examples.uri, f"Split-{split}", "*")):
            where[_feature(example, contract.PATIENT_KEY)].add(split)
            total += 1
    assert all(len(splits) == 1 for splits in where.values()), where  # no patient in two splits
    ingested_patients = {
        p for p in result["per_patient"] if any(k != "skipped" for k in result["per_patient"][p])
    }
    assert {p.decode() for p in where} == ingested_patients  # every patient somewhere
    assert total == result["ingested"]
    assert not os.path.exists(
        os.path.join(examples.uri, executor.OUTCOMES_DIR)
    )  # scratch files removed


def test_an_empty_tree_fails_with_the_report(tmp_path):
    root = tmp_path / "images" / "p1" / "0"
    root.mkdir(parents=True)
    (root / "p1_idx5_x0_y0_class0.png").write_bytes(b"")  # zero-byte: skipped
    with pytest.raises(RuntimeError, match="no image under .* could be ingested"):
        _run_example_gen(str(tmp_path / "images"), tmp_path)


def _example_gen_states(metadata_path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx import v1 as tfx

    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
    )
    [execution_type] = [
        t for t in store.get_execution_types() if t.name.endswith("ImageExampleGen")
    ]
    executions = sorted(store.get_executions_by_type(execution_type.name), key=lambda e: e.id)
    return [metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions]


def test_a_changed_image_invalidates_the_ingest_cache(tmp_path):
    """LocalDagRunner with caching on: the driver's tree fingerprint is part of the cache
    key, so an unchanged tree is served from the cache and a rewritten image is not."""
    from tfx import v1 as tfx

    root = tmp_path / "images"
    summary = synthetic.write_idc(str(root), patients=2, patches_per_patient=3, seed=5)
    metadata_path = str(tmp_path / "metadata.db")
    config = configs.load(env={}, workdir=str(tmp_path))

    def run():
        gen = component.ImageExampleGen(
            image_root=str(root), task="idc", output_config=split_config(config)
        )
        tfx.orchestration.LocalDagRunner().run(
            tfx.dsl.Pipeline(
                pipeline_name="ingest-cache",
                pipeline_root=str(tmp_path / "root"),
                components=[gen],
                enable_cache=True,
                metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                    metadata_path
                ),
            )
        )
        return _example_gen_states(metadata_path)

    assert run() == ["COMPLETE"]
    assert run() == ["COMPLETE", "CACHED"]  # same tree: served from the cache
    image = sorted(glob.glob(str(root / "*" / "*" / "*.png")))[0]
    with open(image, "rb") as handle:
        data = handle.read()
    os.remove(image)
    assert run()[-1] == "COMPLETE"  # a removed image: ingested again
    with open(image, "wb") as handle:
        handle.write(data)
    os.utime(image, ns=(1_000_000_000, 1_000_000_000))  # rewritten: a new modification time
    assert run()[-1] == "COMPLETE"
    assert summary.images  # the tree had images to ingest


def test_each_record_is_in_the_split_tfxs_partition_gives_it(ingested):
    """The same split for each patient as TFX's own ExampleGen partition (what the executor
    handed to TFX's base executor before it wrote the shards itself)."""
    from tfx.components.example_gen import base_example_gen_executor
    from tfx.proto import example_gen_pb2

    config = example_gen_pb2.Output()
    proto_utils.json_to_proto(
        proto_utils.proto_to_json(split_config(configs.load(env={}, workdir="/tmp"))), config
    )
    buckets = list(
        __import__("itertools").accumulate(s.hash_buckets for s in config.split_config.splits)
    )
    examples, _ = ingested
    for index, split in enumerate(artifact_utils.decode_split_names(examples.split_names)):
        for example in _parse(os.path.join(examples.uri, f"Split-{split}", "*")):
            assert (
                base_example_gen_executor._PartitionFn(
                    example, len(buckets), buckets, config.split_config
                )
                == index
            )


def test_tfxs_readers_read_the_splits(ingested):
    """GZIP at deflate level 0 (executor.GZIP_LEVEL): StatisticsGen and Transform read the
    splits through tfx_bsl's Beam source (Beam's ReadFromTFRecord, compression from the
    .gz suffix), the Trainer through its tf.data reader; both read every record."""
    import apache_beam as beam
    from apache_beam.testing import util as beam_util
    from tfx_bsl.public import tfxio

    examples, result = ingested
    total = 0
    for split in artifact_utils.decode_split_names(examples.split_names):
        pattern = os.path.join(examples.uri, f"Split-{split}", "*")
        files = glob.glob(pattern)
        assert files and all(f.endswith(".gz") for f in files)
        expected = len(_parse(pattern))
        source = tfxio.TFExampleRecord(file_pattern=pattern, telemetry_descriptors=["test"])
        with beam.Pipeline() as pipeline:
            rows = (
                pipeline
                | source.BeamSource()
                | beam.Map(lambda batch: batch.num_rows)
                | beam.CombineGlobally(sum)
            )
            beam_util.assert_that(rows, beam_util.equal_to([expected]))
        batches = source.RecordBatches(
            tfxio.RecordBatchesOptions(
                batch_size=1000, drop_final_batch=False, num_epochs=1, shuffle=False
            )
        )
        assert sum(batch.num_rows for batch in batches) == expected
        total += expected
    assert total == result["ingested"]


def test_a_split_without_patients_gets_an_empty_file(tmp_path):
    root = tmp_path / "images"
    synthetic.write_idc(str(root), patients=1, patches_per_patient=4, seed=5, quirks=False)
    examples = _run_example_gen(str(root), tmp_path)
    counts = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
        files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*"))
        assert files, split  # readers glob the folder: never empty
        counts[split] = len(_parse(os.path.join(examples.uri, f"Split-{split}", "*")))
    assert sorted(counts.values())[:2] == [0, 0] and sum(
        counts.values()
    ) == examples.get_int_custom_property("ingested")
