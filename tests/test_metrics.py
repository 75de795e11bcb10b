import itertools

import numpy as np
import pytest

from breastdx_core import metrics


def _brute_auc(labels, scores):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    return sum(pairs) / len(pairs)


def test_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # many ties
    assert metrics.roc_auc(labels, scores) == pytest.approx(_brute_auc(labels, scores))
    assert np.isnan(metrics.roc_auc(np.ones(4), np.arange(4)))


def test_binary_metrics_by_hand():
    m = metrics.binary_metrics(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.2, 0.6, 0.1, 0.3]))
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 2)
    assert m["sensitivity"] == 0.5 and m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == 0.6 and m["precision"] == 0.5


def test_patient_bootstrap_known_answers():
    groups = np.repeat([f"p{i}" for i in range(20)], 10)
    labels = np.tile([0, 1], 100)
    perfect = metrics.patient_bootstrap(labels, labels.astype(float), groups, resamples=200)
    assert perfect["low"] == perfect["high"] == 1.0
    rng = np.random.default_rng(0)
    noise = metrics.patient_bootstrap(labels, rng.random(200), groups, resamples=300)
    assert noise["low"] < 0.5 < noise["high"]
    assert metrics.patient_bootstrap(labels[:10], labels[:10], groups[:10]) is None  # one patient
