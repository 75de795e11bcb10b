"""The mammography variant end to end (slow: e2e): `breastdx demo --task cbis --variant
mammo` (what `make demo PRESET=cbis` runs) through `create_pipeline` on a tiny synthetic
CBIS-DDSM release, one run per session (tests/conftest_presets.py, shared with
test_webapp_model_kinds.py).

It checks what the run really wrote: the pushed SavedModel's three signatures on real
bytes, its schema-valid card completed by the EvaluationReport component (held-out test
metrics with n and CIs, decision rule, input contract) with the report beside it, the
warm start in ML Metadata's lineage, and the console the person at the terminal saw
(every component through the Pusher, no pip walls).
"""

import glob
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from breastdx_core import contract, model_card
from components.mammo import records
from pipeline import summary

pytestmark = pytest.mark.e2e

pytest_plugins = ["conftest_presets"]

COMPONENTS = (
    "CbisExampleGen",
    "PatchTrainer",
    "Trainer",
    "Evaluator",
    "EvaluationReport",
    "Pusher",
)


@pytest.fixture(scope="module")
def pushed(cbis_run):
    config, _ = cbis_run
    version_dir = summary.newest_pushed(config)
    assert version_dir, f"nothing pushed under {config.serving_root}/{config.model_name}"
    return (
        config,
        version_dir,
        model_card.read(os.path.join(version_dir, contract.MODEL_CARD_RELPATH)),
    )


def _mammogram(config):
    return sorted(
        glob.glob(os.path.join(config.data_root, "CBIS-DDSM", "*", "*", "*", "000000.png"))
    )[0]


def test_pushed_model_answers_bytes_examples_and_the_heatmap(pushed):
    config, version_dir, _ = pushed
    model = tf.saved_model.load(version_dir)
    assert {
        contract.SIGNATURE_BYTES,
        contract.SIGNATURE_EXAMPLES,
        records.SIGNATURE_HEATMAP,
    } <= set(model.signatures)
    encoded = open(_mammogram(config), "rb").read()  # the release's own PNG, at its own size
    out = model.signatures[contract.SIGNATURE_BYTES](
        **{contract.SERVING_INPUT_BYTES: tf.constant([encoded])}
    )
    probabilities = out[contract.OUTPUT_PROBABILITIES].numpy()
    assert probabilities.shape == (1, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                contract.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
            }
        )
    )
    by_example = model.signatures[contract.SIGNATURE_EXAMPLES](
        **{contract.SERVING_INPUT_EXAMPLES: tf.constant([example.SerializeToString()])}
    )
    np.testing.assert_allclose(
        by_example[contract.OUTPUT_POSITIVE].numpy(),
        out[contract.OUTPUT_POSITIVE].numpy(),
        rtol=1e-5,
    )
    heat = model.signatures[records.SIGNATURE_HEATMAP](
        **{contract.SERVING_INPUT_BYTES: tf.constant([encoded])}
    )
    heat = heat[records.OUTPUT_HEATMAP].numpy()
    rows = (
        config.mammography.image_size[0] - config.mammography.patch_size
    ) // config.mammography.heatmap_stride + 1
    cols = (
        config.mammography.image_size[1] - config.mammography.patch_size
    ) // config.mammography.heatmap_stride + 1
    assert heat.shape == (1, rows, cols, len(contract.CBIS_PATCH_CLASSES))
    np.testing.assert_allclose(heat.sum(-1), 1.0, rtol=1e-4)


def test_card_is_schema_valid_and_carries_both_models(pushed):
    config, version_dir, card = pushed
    model_card.validate(card)
    assert card["variant"] == "whole_image" and card["class_names"] == list(
        records.WHOLE_CLASS_NAMES
    )
    assert "not a diagnosis" in card["intended_use"]
    assert card["input_contract"]["heatmap_signature"] == records.SIGNATURE_HEATMAP
    assert (
        card["image_size"] == list(config.mammography.image_size)
        and card["patch_size"] == config.mammography.patch_size
    )
    evaluation = card["evaluation"]
    assert evaluation["synthetic_data"] is True and "SYNTHETIC" in evaluation["note"]
    assert (
        evaluation["n_images"] == evaluation["metrics"]["example_count"] > 0
    )  # the Evaluator's, on eval
    patch = card["patch_model"]
    assert patch["variant"] == "patch" and patch["class_names"] == list(contract.CBIS_PATCH_CLASSES)
    assert patch["evaluation"]["metrics"]["n"] > 0
    assert card["model_name"] == config.model_name == "breastdx-cbis-mammo"
    assert str(card["version"]) == os.path.basename(version_dir)


def test_card_records_the_pretrained_backbone_the_preset_started_from(pushed):
    """The preset's default: ImageNet EfficientNet-Lite0 in both models, its
    package, version and SHA-256 in the pushed card (through EvaluationReport and Pusher)."""
    from breastdx_core import pretrained

    config, _, card = pushed
    assert (
        config.mammography.backbone == "efficientnet_lite0"
        and config.training.weights == pretrained.IMAGENET
    )
    source = pretrained.PRETRAINED["efficientnet_lite0"]
    for which in (card, card["patch_model"]):
        assert which["backbone"] == "efficientnet_lite0"
        provenance = which["weights_provenance"]
        assert provenance["source"] == "package" and provenance["package"] == source.package
        assert (
            provenance["package_version"] == source.version
            and provenance["package_file_sha256"] == source.sha256
        )
        assert (
            provenance["sha256"]
            == pretrained.provenance(config.training.pretrained_dir, "efficientnet_lite0")["sha256"]
        )


def _split_patients(examples_uri, split):
    from components.evaluation import scoring

    dataset = tf.data.TFRecordDataset(
        scoring.split_records(examples_uri, split), compression_type="GZIP"
    )
    spec = {contract.PATIENT_KEY: tf.io.FixedLenFeature([], tf.string)}
    return [tf.io.parse_single_example(r, spec)[contract.PATIENT_KEY].numpy() for r in dataset]


def test_card_carries_the_evaluation_report_on_the_release_test_split(pushed):
    """The EvaluationReport component's fields, as in the classify variant: the test split
    is the release's own test patients (held out), calibration ran on other patients, and
    the report files were published beside the model."""
    import json

    from breastdx_core import decision
    from components.mammo import cbis

    config, version_dir, card = pushed
    abnormalities, _ = cbis.read_release(config.data_root)
    release_test = {a.patient_id for a in abnormalities if a.split == "test"}
    mammograms = cbis.mammograms(abnormalities)
    test = card["evaluation"]["test"]
    assert test["n_patients"] == len(release_test)
    assert test["n_images"] == sum(1 for m in mammograms if m.split == "test")
    auc = test["auc"]
    assert auc["n"] == test["n_images"] and 0.0 <= auc["value"] <= 1.0
    assert (
        set(auc["ci95"]) >= {"low", "high"}
        and auc["ci95"]["low"] <= auc["value"] <= auc["ci95"]["high"]
    )
    assert {"sensitivity", "specificity"} <= set(test["at_operating"])
    # Calibration and claims on different patients: the records the report scored (its
    # examples_uri) hold the release's test patients in test and train patients in eval.
    report = json.load(open(os.path.join(version_dir, card["evaluation_report"]["json"])))
    patients = {
        split: {p.decode() for p in _split_patients(report["examples_uri"], split)}
        for split in ("train", "eval", "test")
    }
    assert patients["test"] == release_test
    release_train = {a.patient_id for a in abnormalities if a.split == "train"}
    assert (
        patients["eval"]
        and patients["eval"] <= release_train
        and not patients["eval"] & patients["train"]
    )
    assert len(patients["eval"]) == card["evaluation"]["n_patients"]
    rule = card["decision_rule"]
    assert (
        rule["class_names"] == list(records.WHOLE_CLASS_NAMES)
        and rule["positive_class"] == "malignant"
    )
    assert rule["kind"] in ("conformal", "threshold") and rule["conformal"][
        "calibrated_on"
    ].startswith("eval")
    assert rule["ood"]["threshold"] is None and "no ood_score output" in rule["ood"]["note"]
    accepted = card["input_contract"]["accepted"]
    assert (
        accepted["width"] is None and accepted["channels"] == [1] and accepted["bit_depths"] == [8]
    )
    assert card["evaluation_report"]["split"].startswith("test")
    assert report["n_images"] == test["n_images"] and report["class_names"] == [
        "benign",
        "malignant",
    ]
    assert os.path.getsize(os.path.join(version_dir, card["evaluation_report"]["html"])) > 1000
    assert (
        isinstance(card["small_sample_warnings"], list) and card["small_sample_warnings"]
    )  # 4 test patients
    # The rule answers a mammogram at its own size (the model fits it) and refuses a photograph.
    raw = open(_mammogram(config), "rb").read()
    assert decision.assess(card, raw, [0.4, 0.6])["status"] != decision.STATUS_NOT_ASSESSED
    photo = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)).save(
        photo, "PNG"
    )
    assert (
        decision.assess(card, photo.getvalue(), [0.4, 0.6])["status"]
        == decision.STATUS_NOT_ASSESSED
    )


def test_whole_image_trainer_is_warm_started_from_the_patch_trainer(cbis_run):
    """ML Metadata's lineage: the Trainer's base_model input is the PatchTrainer's model."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config, _ = cbis_run
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.metadata_path
    store = metadata_store.MetadataStore(connection)
    by_node = {
        node: [
            e.id
            for e in store.get_executions_by_context(
                store.get_context_by_type_and_name("node", f"{config.pipeline_name}.{node}").id
            )
        ]
        for node in ("PatchTrainer", "Trainer")
    }
    events = store.get_events_by_execution_ids(by_node["PatchTrainer"] + by_node["Trainer"])
    produced = {
        e.artifact_id
        for e in events
        if e.execution_id in by_node["PatchTrainer"] and e.type == metadata_store_pb2.Event.OUTPUT
    }
    base_inputs = {
        e.artifact_id
        for e in events
        if e.execution_id in by_node["Trainer"]
        and e.type == metadata_store_pb2.Event.INPUT
        and any(step.key == "base_model" for step in e.path.steps)
    }
    assert produced and base_inputs and base_inputs <= produced, (by_node, produced, base_inputs)


def test_console_shows_every_component_to_the_pusher_and_no_pip_walls(cbis_run):
    """The demo's real console output, through the progress filter (pipeline/console.py)."""
    _, console = cbis_run
    for name in COMPONENTS:
        assert f"{name} ..." in console, console[-3000:]
        assert f"{name} done in " in console, console[-3000:]
    assert "training steps done" in console  # the Trainers' progress (components/progress.py)
    assert (
        "SetuptoolsDeprecationWarning" not in console
        and "byte-compiling is disabled" not in console
    )
    assert contract.RESEARCH_ONLY in console and "SYNTHETIC" in console
    assert (
        "held-out test  AUC" in console and "decision rule  " in console
    )  # the summary reads the report
    assert "backbone       efficientnet_lite0 from ImageNet-pretrained weights" in console


def test_summary_writes_the_heatmap_overlay(cbis_run):
    _, console = cbis_run
    [line] = [line for line in console.splitlines() if line.startswith("heatmap ")]
    path = line.split()[-1]
    assert os.path.exists(path) and np.load(path[:-4] + ".npy").shape[-1] == len(
        contract.CBIS_PATCH_CLASSES
    )
