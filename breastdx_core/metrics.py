"""Classification metrics with honest uncertainty, in NumPy.

The run summary (`pipeline/summary.py`) calls these on the held-out test split; they
are independent of TFMA, so the two can be checked against each other. Confidence
intervals come from a bootstrap over patients, not patches: patches of one patient
are not independent evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count half); NaN with one class.

    Args:
        labels: [n] 0/1.
        scores: [n] float, higher means more likely 1.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    """TP/FP/TN/FN of ``scores >= threshold`` against 0/1 ``labels``."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) >= threshold
    return {
        "tp": int(np.sum(predicted & labels)),
        "fp": int(np.sum(predicted & ~labels)),
        "tn": int(np.sum(~predicted & ~labels)),
        "fn": int(np.sum(~predicted & labels)),
    }


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def binary_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """AUC, accuracy, sensitivity (recall), specificity, precision at ``threshold``."""
    cm = confusion(labels, scores, threshold)
    n = sum(cm.values())
    return {
        "auc": roc_auc(labels, scores),
        "accuracy": _ratio(cm["tp"] + cm["tn"], n),
        "sensitivity": _ratio(cm["tp"], cm["tp"] + cm["fn"]),
        "specificity": _ratio(cm["tn"], cm["tn"] + cm["fp"]),
        "precision": _ratio(cm["tp"], cm["tp"] + cm["fp"]),
        **{k: float(v) for k, v in cm.items()},
    }


def patient_bootstrap(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: Sequence[str],
    metric=roc_auc,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float] | None:
    """Percentile CI of ``metric`` resampling whole patients with replacement.

    Returns:
        {"low", "high", "resamples"} (resamples where the metric was defined), or None
        with fewer than two patients.
    """
    labels, scores, groups = np.asarray(labels), np.asarray(scores), np.asarray(groups)
    patients = np.unique(groups)
    if len(patients) < 2:
        return None
    members = [np.flatnonzero(groups == p) for p in patients]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(patients), len(patients))
        index = np.concatenate([members[i] for i in pick])
        value = metric(labels[index], scores[index])
        if not np.isnan(value):
            values.append(value)
    if not values:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high), "resamples": len(values)}


# The published IDC references' test-set prevalence (Cruz-Roa et al. 2014; Janowczyk &
# Madabhushi 2016): their F1 is comparable only at the same share of positives.
REFERENCE_PREVALENCE = 0.284


def f1_at_prevalence(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.5,
    prevalence: float = REFERENCE_PREVALENCE,
) -> float:
    """F1 of ``scores >= threshold`` as it would be on a set with ``prevalence`` positives:
    sensitivity and specificity are kept, the classes reweighted (positives by
    prevalence / observed share, negatives likewise). NaN with one class.

    Args:
        labels: [n] 0/1.
        scores: [n] float, higher means more likely 1.
    """
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    cm = confusion(labels, scores, threshold)
    value = f1_from_rates(cm["tp"] / n_pos, cm["fp"] / n_neg, prevalence)
    return float(value) if np.isfinite(value) else float("nan")


def f1_from_rates(sensitivity, false_positive_rate, prevalence: float = REFERENCE_PREVALENCE):
    """F1 on a population with ``prevalence`` positives of a rule with this sensitivity and
    false-positive rate (scalars or arrays alike); NaN where nothing is positive or called."""
    sensitivity = np.asarray(sensitivity, dtype=np.float64)
    tp = sensitivity * prevalence
    fp = np.asarray(false_positive_rate, dtype=np.float64) * (1 - prevalence)
    fn = (1 - sensitivity) * prevalence
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), np.nan)
