"""The evaluation report's numbers, recomputed independently, and the patient bootstrap."""

import itertools
import math

import numpy as np
import pytest

from breastdx_core import metrics
from lab import evaluation_report as er

# A small labelled set: 4 patients, 12 patches.
LABELS = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0])
SCORES = np.array([0.95, 0.40, 0.30, 0.05, 0.80, 0.60, 0.20, 0.10, 0.70, 0.90, 0.35, 0.45])
GROUPS = np.array(["a", "a", "a", "a", "b", "b", "b", "c", "c", "c", "d", "d"])


def _by_hand(threshold):
    tp = fp = tn = fn = 0
    for y, s in zip(LABELS, SCORES):
        if s >= threshold:
            tp, fp = tp + (y == 1), fp + (y == 0)
        else:
            fn, tn = fn + (y == 1), tn + (y == 0)
    return tp, fp, tn, fn


def _auc_by_pairs(labels, scores):
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("threshold", [0.5, 0.38])
def test_metrics_match_an_independent_count(threshold):
    tp, fp, tn, fn = _by_hand(threshold)
    got = er.metrics_with_ci(LABELS, SCORES, GROUPS, threshold, resamples=50)
    assert got["accuracy"]["value"] == pytest.approx((tp + tn) / 12)
    assert got["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
    assert got["specificity"]["value"] == pytest.approx(tn / (tn + fp))
    assert got["precision"]["value"] == pytest.approx(tp / (tp + fp))
    assert got["f1"]["value"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["auc"]["value"] == pytest.approx(_auc_by_pairs(LABELS, SCORES))
    assert (
        got["sensitivity"]["n"] == 6 and got["specificity"]["n"] == 6 and got["accuracy"]["n"] == 12
    )
    for m in got.values():
        assert m["ci95"]["low"] <= m["value"] + 1e-12 <= m["ci95"]["high"] + 2e-12 or math.isnan(
            m["value"]
        )


def test_thresholds_keep_their_targets():
    # positives score .95 .90 .80 .70 .40 .35: keeping 5 of 6 (>= 0.8) needs t = 0.40
    t = er.threshold_for_sensitivity(LABELS, SCORES, 0.8)
    assert t == pytest.approx(0.40)
    assert metrics.binary_metrics(LABELS, SCORES, t)["sensitivity"] >= 0.8
    assert metrics.binary_metrics(LABELS, SCORES, np.nextafter(t, 1))["sensitivity"] < 0.8
    # negatives .60 .45 .30 .20 .10 .05: specificity 1.0 needs t just above .60
    high = er.threshold_for_specificity(LABELS, SCORES, 1.0)
    assert 0.60 < high < 0.6000001
    assert metrics.binary_metrics(LABELS, SCORES, high)["specificity"] == 1.0


def test_calibration_error_by_hand():
    cal = er.calibration(LABELS, SCORES, bins=2)
    low = SCORES < 0.5
    expected = (
        low.sum() * abs(SCORES[low].mean() - LABELS[low].mean())
        + (~low).sum() * abs(SCORES[~low].mean() - LABELS[~low].mean())
    ) / 12
    assert cal["ece"] == pytest.approx(expected)
    assert [b["n"] for b in cal["bins"]] == [int(low.sum()), int((~low).sum())]


def test_curves_end_at_the_corners():
    roc = er.roc_curve(LABELS, SCORES)
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and (roc["fpr"][-1], roc["tpr"][-1]) == (
        1.0,
        1.0,
    )
    auc_trapezoid = np.trapz(roc["tpr"], roc["fpr"])
    assert auc_trapezoid == pytest.approx(_auc_by_pairs(LABELS, SCORES))
    pr = er.pr_curve(LABELS, SCORES)
    assert pr["recall"][-1] == 1.0 and pr["precision"][-1] == pytest.approx(0.5)


def test_patient_level_aggregates_each_patients_patches():
    patient = er.patient_level(LABELS, SCORES, GROUPS, 0.5, resamples=20)
    # max per patient: a .95 (label 1), b .80 (1), c .90 (1), d .45 (1): every patient positive
    assert patient["n_patients"] == 4 and patient["patients_per_class"] == [0, 4]
    assert patient["confusion"] == {"tp": 3, "fp": 0, "tn": 0, "fn": 1}
    assert "undefined" in patient["note"]
    burden = {
        row["patient"]: (row["true"], row["called"]) for row in patient["burden"]["per_patient"]
    }
    assert burden["a"] == (0.5, 0.25) and burden["d"] == (0.5, 0.0)


def test_bootstrap_known_answers():
    # 400 patients, one patch each, half positive: the CI of the mean is the binomial one.
    y = np.array([0, 1] * 200)
    mean = lambda labels, scores: float(np.mean(labels))  # noqa: E731
    ci = metrics.patient_bootstrap(
        y, y.astype(float), np.arange(400).astype(str), metric=mean, resamples=2000
    )
    half_width = 1.96 * math.sqrt(0.25 / 400)
    assert ci["low"] == pytest.approx(0.5 - half_width, abs=0.01)
    assert ci["high"] == pytest.approx(0.5 + half_width, abs=0.01)
    # The same patients with 10 identical patches each: resampling patients, not patches,
    # gives the same interval (10x the patches are not 10x the evidence).
    y10 = np.repeat(y, 10)
    groups10 = np.repeat(np.arange(400).astype(str), 10)
    ci10 = metrics.patient_bootstrap(y10, y10.astype(float), groups10, metric=mean, resamples=2000)
    assert ci10["low"] == pytest.approx(ci["low"], abs=0.005) and ci10["high"] == pytest.approx(
        ci["high"], abs=0.005
    )
    # Two patients, all-0 and all-1: resamples give 0, 0.5 or 1, so the 95 % CI is [0, 1].
    ci2 = metrics.patient_bootstrap(
        np.array([0, 0, 1, 1]),
        np.zeros(4),
        np.array(["p", "p", "q", "q"]),
        metric=mean,
        resamples=2000,
    )
    assert (ci2["low"], ci2["high"]) == (0.0, 1.0)


def test_report_is_labelled_and_renders(tmp_path):
    card = {
        "model_name": "m",
        "version": 3,
        "backbone": "vgg16",
        "training_history": {
            "loss": [0.7, 0.5],
            "val_loss": [0.69, 0.6],
            "sparse_categorical_accuracy": [0.5, 0.7],
            "val_sparse_categorical_accuracy": [0.55, 0.65],
        },
        "training_diagnostics": {
            "rules": {"overfitting": {"triggered": True, "detail": "gap grew to 0.4"}},
            "triggered": ["overfitting"],
        },
    }
    report = er.build_report(
        (LABELS, SCORES, GROUPS),
        (LABELS, SCORES, GROUPS),
        target_sensitivity=0.8,
        resamples=50,
        card=card,
        synthetic=True,
        splits={"test": {"images": 12, "patients": 4, "per_class": [6, 6]}},
    )
    assert report["thresholds"]["operating"]["value"] == pytest.approx(0.40)
    assert report["image_level"]["confusion_at_operating"] == metrics.confusion(
        LABELS, SCORES, 0.40
    )
    assert report["synthetic_data"] and "SYNTHETIC" in report["data_note"]
    version_dir = tmp_path / "3"
    paths = er.write_report(str(version_dir), report)
    page = open(paths["html"]).read()
    assert "Research use only, not a diagnosis." in page and "SYNTHETIC DATA" in page
    assert page.count("data:image/png;base64,") == 5  # confusion, ROC, PR, calibration, training
    assert "gap grew to 0.4" in page
    assert not (
        version_dir / "assets.extra" / "model_card.json"
    ).exists()  # a published card is not rewritten


def test_staged_fine_tuning_history_is_drawn_end_to_end(tmp_path):
    """The mammography Trainers' card holds a list of stages (validation once per stage):
    the report draws them end to end, each val_* point at its stage's last epoch."""
    from components.evaluation import plots

    staged = [
        {
            "stage": "head",
            "learning_rate": 1e-3,
            "loss": [0.9, 0.8],
            "auc": [0.5, 0.6],
            "val_loss": 0.85,
            "val_auc": 0.55,
        },
        {
            "stage": "all",
            "learning_rate": 1e-4,
            "loss": [0.7, 0.6, 0.5],
            "auc": [0.7, 0.8, 0.9],
            "val_loss": 0.65,
            "val_auc": 0.7,
        },
    ]
    series, ends = plots.history_series(staged)
    assert series["loss"] == ([1, 2, 3, 4, 5], [0.9, 0.8, 0.7, 0.6, 0.5])
    assert series["val_auc"] == ([2, 5], [0.55, 0.7]) and ends == [2]
    assert "learning_rate" not in series and "stage" not in series
    assert plots.history_series({"loss": [0.7, 0.5]}) == ({"loss": ([1, 2], [0.7, 0.5])}, [])
    report = er.build_report(
        (LABELS, SCORES, GROUPS),
        (LABELS, SCORES, GROUPS),
        resamples=20,
        card={"training_history": staged},
    )
    page = open(er.write_report(str(tmp_path / "1"), report)["html"]).read()
    assert page.count("data:image/png;base64,") == 5  # the training curves too


def test_compare_table_and_figures_from_rows(tmp_path):
    from lab import compare

    rows = []
    for i, name in enumerate(("vgg16", "cnn_lstm")):
        rows.append(
            {
                "backbone": name,
                "weights": "none",
                "parameters": 100 + i,
                "trainable": 90,
                "train_accuracy": 0.8,
                "val_accuracy": 0.7 + i / 10,
                "val_precision": 0.6,
                "val_recall": 0.5,
                "val_f1": 0.55,
                "val_auc": float("nan") if i else 0.75,
                "size_mb": 58.0 + i,
                "train_seconds": 12.5,
                "diagnostics": "none",
                "history": {
                    "loss": [0.7, 0.6],
                    "val_loss": [0.69, 0.65],
                    "sparse_categorical_accuracy": [0.5, 0.6],
                },
                "roc": {"labels": LABELS.tolist(), "scores": SCORES.tolist()},
            }
        )
    files = compare.write_table(rows, str(tmp_path))
    files.update(compare.write_figures(rows, str(tmp_path)))
    md = open(files["md"]).read().splitlines()
    assert md[0].startswith("| backbone | weights | parameters") and len(md) == 4
    assert "| cnn_lstm | none | 101 |" in md[3] and "n/a" in md[3]  # an undefined AUC says so
    import csv

    table = list(csv.DictReader(open(files["csv"])))
    assert [r["val_accuracy"] for r in table] == ["0.7", "0.8"]
    for name in ("accuracy_vs_size", "roc", "curves"):
        assert open(files[name], "rb").read(4) == b"\x89PNG"
