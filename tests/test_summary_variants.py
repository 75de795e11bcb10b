"""pipeline/summary.py renders every variant's end-of-run table: the mammography variant's
lines from a pushed card, its exit status, and the classify table's warnings."""

from __future__ import annotations

from breastdx_core import contract
from pipeline import summary

CARD = {
    "backbone": "efficientnet_lite0",
    "weights_provenance": {"source": "random"},
    "patch_model": {"evaluation": {"metrics": {"accuracy": 0.8, "n": 14, "malignant_auc": 0.97}}},
    "evaluation": {
        "metrics": {"auc": 0.75},
        "n_images": 6,
        "n_patients": 4,
        "synthetic_data": True,
        "test": {
            "auc": {"value": 0.714, "n": 11, "ci95": {"low": 0.3, "high": 1.0}},
            "n_patients": 8,
            "at_operating": {"sensitivity": {"value": None, "n": 3}},
        },
    },
    "decision_rule": {
        "kind": "threshold",
        "operating_threshold": 0.25,
        "conformal": {"reason": "too few eval images"},
    },
    "small_sample_warnings": ["test split: 8 patients (fewer than 10)"],
    "input_contract": {"heatmap_signature": "heatmap"},
    "evaluation_report": {"html": "assets.extra/evaluation_report.html"},
}


def test_mammography_lines_come_from_the_card():
    text = summary.render(
        {
            "variant": "mammo",
            "pushed_model": "/s/m/7",
            "card": CARD,
            "heatmap": "/w/cbis/heatmap_1.png",
        }
    )
    lines = text.splitlines()
    assert lines[0] == "backbone       efficientnet_lite0 from random weights (no pretraining)"
    assert "held-out test  AUC 0.714 [0.300-1.000], n=11 mammograms, 8 patients" in text
    assert (
        "sensitivity n/a (n=3)" in text and "decision rule  threshold (too few eval images)" in text
    )
    assert "warning        test split: 8 patients (fewer than 10)" in lines
    assert "report         /s/m/7/assets.extra/evaluation_report.html" in lines
    assert "heatmap        /w/cbis/heatmap_1.png" in lines
    assert lines[-2].startswith("Metrics on SYNTHETIC data") and lines[-1] == contract.RESEARCH_ONLY
    assert summary.exit_status({"variant": "mammo", "pushed_model": "/s/m/7"}) == 0


def test_an_unblessed_mammography_run_says_so_and_fails():
    result = {"variant": "mammo", "pushed_model": None, "min_whole_auc": 0.6}
    assert summary.render(result).startswith("not pushed: the whole-image model did not reach")
    assert summary.exit_status(result) == 1


def test_classify_table_ends_with_its_warnings_and_the_disclaimer():
    result = {
        "pipeline": "p",
        "class_names": ["a", "b"],
        "blessed": False,
        "synthetic_data": True,
        "card_warnings": ["eval split: 6 patients"],
    }
    lines = summary.render(result).splitlines()
    assert "blessed" in lines[1] and "NO" in lines[1]
    assert lines[-3] == "WARNING: eval split: 6 patients"
    assert lines[-1] == contract.RESEARCH_ONLY
    assert summary.exit_status(result) == 0
