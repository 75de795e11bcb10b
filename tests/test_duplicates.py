"""Duplicate-safe ingest: content hashes in records and report, label
conflicts left out, cross-patient copies kept once; symbolic-linked patient folders."""

import glob
import hashlib
import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from breastdx_core import configs, contract
from components.image_ingest import component, executor, layouts, report
from pipeline.pipeline import split_config


def _png(seed, size=(24, 24)):
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _busi_pair_tree(root):
    """BUSI's shape: `malignant (145).png` and `benign (433).png` hold the same bytes."""
    twin = _png(145)
    _write(root, "malignant/malignant (145).png", twin)
    _write(root, "benign/benign (433).png", twin)
    for i in range(4):
        _write(root, f"benign/benign ({i}).png", _png(100 + i))
        _write(root, f"malignant/malignant ({i}).png", _png(200 + i))
        _write(root, f"normal/normal ({i}).png", _png(300 + i))
    return hashlib.sha256(twin).hexdigest()


def _run(root, out, task):
    config = configs.load(env={}, workdir=str(out), task=task)
    gen = component.ImageExampleGen(
        image_root=str(root), task=task, output_config=split_config(config), shard_size=3
    )
    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    properties = {k: v for k, v in gen.exec_properties.items() if v is not None}
    properties = {
        k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v
        for k, v in properties.items()
    }
    executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, properties)
    with open(os.path.join(examples.uri, report.REPORT_JSON)) as handle:
        return examples, json.load(handle)


def _records(examples):
    files = glob.glob(os.path.join(examples.uri, "Split-*", "*"))
    return [
        tf.train.Example.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


def test_busi_pair_is_a_label_conflict_left_out_and_reported(tmp_path):
    sha = _busi_pair_tree(tmp_path / "busi")
    examples, result = _run(tmp_path / "busi", tmp_path, "busi")
    reasons = {s["path"]: s["reason"] for s in result["skipped_files"]}
    assert reasons == {
        "malignant/malignant (145).png": "duplicate_label_conflict",
        "benign/benign (433).png": "duplicate_label_conflict",
    }
    [conflict] = result["duplicates"]["label_conflicts"]
    assert conflict["sha256"] == sha and sorted(conflict["labels"]) == [1, 2]  # benign, malignant
    assert result["ingested"] == 12 and len(result["content_sha256"]) == 12
    records = _records(examples)
    assert len(records) == 12
    for record in records:
        feature = record.features.feature
        digest = feature[contract.CONTENT_HASH_KEY].bytes_list.value[0].decode()
        assert (
            digest
            == hashlib.sha256(feature[contract.IMAGE_KEY].bytes_list.value[0]).hexdigest()
            != sha
        )
        assert (
            result["content_sha256"][feature[contract.SOURCE_PATH_KEY].bytes_list.value[0].decode()]
            == digest
        )
    text = open(os.path.join(examples.uri, report.REPORT_MD)).read()
    assert "1 label conflict(s)" in text and "malignant (145).png" in text


def test_same_label_copies_across_patients_are_kept_once(tmp_path):
    root = tmp_path / "idc"
    copy = _png(7)
    _write(root, "p1/1/p1_idx5_x0_y0_class1.png", copy)
    _write(root, "p2/1/p2_idx5_x50_y0_class1.png", copy)  # same bytes, another patient
    _write(root, "p1/1/p1_idx5_x0_y50_class1.png", copy)  # same bytes, same patient: kept
    _write(root, "p2/0/p2_idx5_x0_y0_class0.png", _png(8))
    candidates = [
        v
        for v in layouts.scan(str(root), contract.get_task("idc"))
        if isinstance(v, layouts.Candidate)
    ]
    kept, skipped, summary = layouts.deduplicate(candidates)
    assert [s.rel for s in skipped] == ["p2/1/p2_idx5_x50_y0_class1.png"] and skipped[
        0
    ].reason == "duplicate"
    assert {c.patient_id for c in kept if c.sha256 == hashlib.sha256(copy).hexdigest()} == {"p1"}
    assert summary["same_patient_copies"] == 1 and summary["cross_patient"][0]["kept"].startswith(
        "p1/"
    )
    assert all(len(c.sha256) == 64 for c in kept)


def test_symlinked_patient_folders_are_read_through(tmp_path):
    store, root = tmp_path / "mount", tmp_path / "root"
    for patient in ("10253", "10254"):
        _write(store, f"{patient}/0/{patient}_idx5_x0_y0_class0.png", _png(2 * int(patient)))
        _write(store, f"{patient}/1/{patient}_idx5_x50_y0_class1.png", _png(2 * int(patient) + 1))
    os.makedirs(root)
    for patient in ("10253", "10254"):
        os.symlink(store / patient, root / patient)
    os.symlink(root, root / "10253" / "loop")  # a link back up must not loop forever
    task = contract.get_task("idc")
    assert layouts.detect(str(root), task) == "idc"
    candidates = [v for v in layouts.scan(str(root), task) if isinstance(v, layouts.Candidate)]
    assert sorted(c.rel for c in candidates) == [
        "10253/0/10253_idx5_x0_y0_class0.png",
        "10253/1/10253_idx5_x50_y0_class1.png",
        "10254/0/10254_idx5_x0_y0_class0.png",
        "10254/1/10254_idx5_x50_y0_class1.png",
    ]


def test_one_patient_holding_a_class_is_a_report_warning():
    outcomes = [
        report.Outcome(f"p{i}/0/a{i}.png", True, label=0, patient_id=f"p{i}", size="50x50")
        for i in range(3)
    ]
    outcomes += [
        report.Outcome(f"p1/1/b{i}.png", True, label=1, patient_id="p1", size="50x50")
        for i in range(4)
    ]
    result = report.build(outcomes, ("0", "1"), {})
    assert result["class_warnings"] == [
        "class '1': all 4 images come from one patient (p1); the split that holds this patient holds the whole "
        "class, so the others can neither learn nor measure it"
    ]
    assert "## Warnings" in report.render_markdown(result)


def test_the_executor_leaves_a_cross_patient_copy_out_of_its_split_files(tmp_path):
    """The executor hashes each file as it writes its record and rewrites afterwards the
    record files that hold a copy left out (one read per file)."""
    root = tmp_path / "idc"
    copy = _png(7)
    # Fixed, distinct seeds (1000 + 10 * patient + i): the only copy is the one planted below.
    for n, patient in enumerate(("p1", "p2", "p3", "p4")):
        for i in range(3):
            _write(root, f"{patient}/0/{patient}_idx5_x{i}_y0_class0.png", _png(1000 + 10 * n + i))
    _write(root, "p1/1/p1_idx5_x0_y0_class1.png", copy)
    _write(root, "p3/1/p3_idx5_x50_y0_class1.png", copy)  # another patient: left out
    _write(root, "p1/1/p1_idx5_x0_y50_class1.png", copy)  # same patient: kept
    examples, result = _run(root, tmp_path, "idc")
    assert {s["path"]: s["reason"] for s in result["skipped_files"]} == {
        "p3/1/p3_idx5_x50_y0_class1.png": "duplicate"
    }
    paths = sorted(
        r.features.feature[contract.SOURCE_PATH_KEY].bytes_list.value[0].decode()
        for r in _records(examples)
    )
    assert len(paths) == result["ingested"] == 14 and "p3/1/p3_idx5_x50_y0_class1.png" not in paths
    assert {"p1/1/p1_idx5_x0_y0_class1.png", "p1/1/p1_idx5_x0_y50_class1.png"} <= set(paths)
    assert result["duplicates"]["cross_patient"] == [
        {
            "sha256": hashlib.sha256(copy).hexdigest(),
            "kept": "p1/1/p1_idx5_x0_y0_class1.png",
            "left_out": ["p3/1/p3_idx5_x50_y0_class1.png"],
        }
    ]
    assert result["duplicates"]["same_patient_copies"] == 1
