"""ImageIngest's executor on Beam, then TFX's ImportExampleGen executor on its output."""
import collections
import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components.image_ingest import component, executor, report
from pipeline import configs, contract
from pipeline.pipeline import split_config


def _parse(path, compression="GZIP"):
    out = []
    for record in tf.data.TFRecordDataset(glob.glob(path), compression_type=compression):
        out.append(tf.train.Example.FromString(record.numpy()))
    return out


def _feature(example, key):
    f = example.features.feature[key]
    return f.bytes_list.value[0] if f.HasField("bytes_list") else f.int64_list.value[0]


@pytest.fixture(scope="module")
def ingested(idc_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    records = component.ImageRecords()
    records.uri = str(out / "records")
    base = standard_artifacts.String()
    base.uri = str(out / "base" / "value")
    os.makedirs(os.path.dirname(base.uri))
    executor.Executor().Do({}, {"records": [records], "records_base": [base]}, {
        executor.ROOT_KEY: idc_tree.root, executor.LAYOUT_KEY: "auto", executor.TASK_KEY: "idc",
        executor.VALIDATION_KEY: "structure", executor.SHARD_SIZE_KEY: 7})
    with open(os.path.join(records.uri, report.REPORT_JSON)) as handle:
        return records, base, json.load(handle)


def test_records_keep_the_original_bytes(ingested, idc_tree):
    records, base, _ = ingested
    examples = _parse(os.path.join(base.value, "*"), compression="")  # PNG bytes do not compress
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
    records, _, result = ingested
    assert result["entries"] == idc_tree.files
    assert result["ingested"] + result["skipped"] == idc_tree.files
    assert result["ingested"] == idc_tree.images
    reasons = {s["path"]: s["reason"] for s in result["skipped_files"]}
    assert reasons == idc_tree.quirks  # the truncated PNG and the zero-byte file included
    assert sum(sum(v for k, v in c.items() if k != "skipped") for c in result["per_patient"].values()) == \
        result["ingested"]
    assert records.get_int_custom_property("skipped") == len(idc_tree.quirks)
    text = open(os.path.join(records.uri, report.REPORT_MD)).read()
    assert "corrupt" in text and f"ingested **{idc_tree.images}**" in text


def test_import_example_gen_groups_by_patient(ingested, tmp_path):
    _, base, _ = ingested
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    config = configs.load(env={}, workdir=str(tmp_path))
    import_executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, {
        standard_component_specs.INPUT_BASE_KEY: base.value,
        standard_component_specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(
            example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*")])),
        standard_component_specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(split_config(config)),
        standard_component_specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
    })
    where = collections.defaultdict(set)
    total = 0
    for split in ("train", "eval", "test"):
        for example in _parse(os.path.join(examples.uri, f"Split-{split}", "*")):
            where[_feature(example, contract.PATIENT_KEY)].add(split)
            total += 1
    assert all(len(splits) == 1 for splits in where.values()), where  # no patient in two splits
    ingested_patients = {p for p in ingested[2]["per_patient"] if any(
        k != "skipped" for k in ingested[2]["per_patient"][p])}
    assert {p.decode() for p in where} == ingested_patients  # every patient somewhere
    assert total == ingested[2]["ingested"]
