"""`breastdx compare` and `breastdx report` on a tiny finished run (end to end: marked e2e).

The session's LocalDagRunner run on a small synthetic IDC set (tests/conftest.py `idc_run`,
whose model is blessed and pushed; shared with test_pipeline_e2e.py, test_decision_e2e.py and
test_cv.py, so this file pays for no pipeline run of its own), then the study with a two-step
budget over the lighter architectures (the heaviest, DenseNet201, InceptionResNetV2,
ResNet152V2 and Xception, cost minutes each on 2 CPU cores and go through the same code path:
`breastdx compare` runs them), then the evaluation report of the pushed model.
"""

import csv
import json
import os

import pytest

from breastdx_core import contract
from lab import compare, evaluation_report

pytestmark = pytest.mark.e2e

# A pretrained-capable backbone (two rows) and the hybrid, whose feature extractor is the
# keras.applications VGG16: every code path of the study (keras.applications, the
# registry's Lites, the CNN-LSTM) at the suite's cost. A plain keras.applications row goes
# through the same `train_one` (and VGG16 is the session run's own backbone).
LIGHT = ("efficientnet_lite0", "cnn_lstm")
TINY = compare.Budget(
    "tiny",
    train_steps=2,
    eval_steps=1,
    epochs=2,
    batch_size=8,
    train_score_limit=16,
    run_eagerly=True,
)


@pytest.fixture(scope="module")
def finished_run(idc_run):
    """The session run's config: `breastdx compare` and `breastdx report` read its ML Metadata,
    Transform output and pushed model as they read any finished run's."""
    config, _ = idc_run
    return config


def test_compare_writes_the_table_and_plots_for_every_backbone(finished_run):
    assert set(LIGHT) <= set(compare.STUDY)
    result = compare.compare(finished_run, LIGHT, TINY)
    out = result["out_dir"]
    assert out == os.path.join(finished_run.workdir, "reports", "compare")
    with open(result["files"]["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    # EfficientNet-Lite0's ImageNet weights are installed: its pretrained row beside its random one
    assert [(r["backbone"], r["weights"]) for r in rows] == [
        ("efficientnet_lite0", "none"),
        ("efficientnet_lite0", "imagenet"),
        ("cnn_lstm", "none"),
    ]
    assert set(rows[0]) == set(compare.COLUMNS)
    for row in rows:
        assert int(row["parameters"]) > 0 and float(row["size_mb"]) > 0
        assert 0.0 <= float(row["val_accuracy"]) <= 1.0
    sizes = {r["backbone"]: float(r["size_mb"]) for r in rows if r["weights"] == "none"}
    assert sizes["cnn_lstm"] > sizes["efficientnet_lite0"]  # sizes are measured, not copied
    md = open(result["files"]["md"]).read()
    assert md.count("\n") == len(rows) + 2
    for name in ("accuracy_vs_size", "roc", "curves"):
        with open(result["files"][name], "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    page = open(result["files"]["html"]).read()
    assert all(f'src="{n}.png"' in page for n in ("accuracy_vs_size", "roc", "curves"))
    assert contract.RESEARCH_ONLY in page and "SYNTHETIC" in page


def test_report_beside_the_pushed_model(finished_run):
    [version_dir] = evaluation_report.pushed_versions(finished_run)
    data = compare.find_run_data(finished_run)
    paths = evaluation_report.report_for_version(finished_run, version_dir, data.examples.uri)
    report = json.load(open(paths["json"]))
    assert report["synthetic_data"] is True and report["research_use"] == contract.RESEARCH_ONLY
    assert report["n_images"] == sum(report["splits"]["test"]["per_class"])
    assert report["n_patients"] == report["splits"]["test"]["patients"]
    assert report["training_diagnostics"]["rules"]  # from the Trainer's card
    card = json.load(open(os.path.join(version_dir, contract.MODEL_CARD_RELPATH)))
    assert (
        report["decision_rule"] == card["decision_rule"]
    )  # the pushed card's rule, reported again
    assert report["small_sample_warnings"]  # 30 patients: eval and test hold fewer than 10
    assert card["training_diagnostics"]["thresholds"]["exploding_norm"] > 0
