"""Segmentation metrics (components/segmentation/metrics.py) against hand-computed values."""

import math

import numpy as np
import pytest

from components.segmentation import metrics

# 4x4 target with 4 lesion pixels; prediction hits 3 of them and adds 2 false pixels.
TARGET = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
PRED = np.array([[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)
# tp=3, fp=2, fn=1, tn=10


def test_confusion_counts_by_hand():
    assert metrics.confusion(PRED, TARGET) == {"tp": 3, "fp": 2, "fn": 1, "tn": 10}


def test_each_metric_by_hand():
    assert metrics.dice(PRED, TARGET) == pytest.approx(2 * 3 / (5 + 4))  # 0.6667
    assert metrics.jaccard(PRED, TARGET) == pytest.approx(3 / 6)  # |P∩T| / |P∪T|
    assert metrics.tpr(PRED, TARGET) == pytest.approx(3 / 4)
    assert metrics.fpr(PRED, TARGET) == pytest.approx(2 / 12)


def test_probabilities_and_255_masks_are_binarised():
    probs = PRED * 0.8 + 0.1  # 0.9 where predicted, 0.1 elsewhere
    assert metrics.dice(probs, (TARGET * 255).astype(np.uint8)) == pytest.approx(2 / 3)
    assert metrics.dice(probs, TARGET, threshold=0.95) == 0.0  # nothing above 0.95


def test_empty_masks_conventions():
    empty = np.zeros((4, 4), bool)
    assert metrics.dice(empty, empty) == 1.0 and metrics.jaccard(empty, empty) == 1.0
    assert math.isnan(metrics.tpr(empty, empty)) and metrics.fpr(empty, empty) == 0.0
    assert metrics.dice(PRED, empty) == 0.0 and metrics.fpr(PRED, empty) == pytest.approx(5 / 16)


def test_summary_means_and_pooled_values_by_hand():
    empty = np.zeros((4, 4), bool)
    preds = np.stack([PRED, empty])
    targets = np.stack([TARGET, empty])
    s = metrics.summarize(preds, targets)
    assert s["n_images"] == 2
    assert s["dice"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert s["jaccard"] == pytest.approx((0.5 + 1.0) / 2)
    assert s["tpr"] == pytest.approx(0.75)  # the empty target leaves TPR undefined: left out
    assert s["fpr"] == pytest.approx((2 / 12 + 0) / 2)
    # pooled over both images: tp=3, fp=2, fn=1, tn=26
    assert s["global_dice"] == pytest.approx(6 / 9) and s["global_fpr"] == pytest.approx(2 / 28)


def test_summary_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        metrics.summarize(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_area_threshold_and_black_box_report():
    areas = [0.0, 0.01, 0.02, 0.10, 0.20, 0.30]
    malignant = [False, False, False, True, True, True]
    threshold = metrics.fit_area_threshold(areas, malignant)
    assert threshold == pytest.approx((0.02 + 0.10) / 2)
    report = metrics.area_classifier_report(areas, malignant, threshold)
    assert (
        report["accuracy"] == 1.0 and report["sensitivity"] == 1.0 and report["specificity"] == 1.0
    )
    assert report["auc"] == 1.0 and report["area_threshold"] == pytest.approx(0.06)
    # One benign lesion bigger than a malignant one: 8 of 9 pairs ordered, accuracy 5/6.
    report = metrics.area_classifier_report([0.0, 0.01, 0.15, 0.10, 0.20, 0.30], malignant, 0.06)
    assert report["auc"] == pytest.approx(8 / 9) and report["accuracy"] == pytest.approx(5 / 6)
    assert report["specificity"] == pytest.approx(2 / 3)


def test_mask_area_and_auc_ties():
    assert metrics.mask_area(np.stack([PRED, TARGET])).tolist() == [5 / 16, 4 / 16]
    # one roc_auc in the project (breastdx_core.metrics: labels first): ties count one half
    assert metrics.roc_auc([True, False], [0.5, 0.5]) == 0.5
    assert math.isnan(metrics.roc_auc([True], [0.1]))
