"""The report's numbers, in NumPy (TF-free): thresholds, curves, calibration, metrics with
patient-bootstrap CIs, patient-level aggregation, conformal coverage, and `build_report`.

Called by `components.evaluation.report` (the EvaluationReport component and `breastdx
report`), the model lab (ROC curves) and the Trainer's calibration (reliability bins).
The tests recompute these from arrays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from breastdx_core import contract, metrics, model_card

CALIBRATION_BINS = 10
# A patient is positive when any of their patches is; their score is their most
# suspicious patch (the clinical question: "is there IDC anywhere in this patient?").
PATIENT_AGGREGATION = "max"
SYNTHETIC_NOTE = (
    "SYNTHETIC DATA: these metrics show the pipeline works end to end; they say nothing about "
    "how a model does on real tissue."
)


OPERATING_RULES = ("sensitivity", "max_f1", "max_balanced_accuracy")  # breastdx_core/configs.py's


# --- thresholds --------------------------------------------------------------------------
def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold t with sensitivity(scores >= t) >= ``target``.

    Args:
        labels: [n] 0/1; scores: [n] float. NaN without positives.
    """
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    positives = np.sort(scores[labels])[::-1]
    if not len(positives):
        return float("nan")
    keep = int(math.ceil(target * len(positives) - 1e-9))  # positives that must score >= t
    return float(positives[max(keep, 1) - 1])


def operating_points(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct score t, highest first, with the true and false positives of
    ``scores >= t``: (thresholds, TP counts, FP counts), float arrays of one length."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    ranked, truth = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(ranked))[0], len(ranked) - 1]  # each distinct score's last
    return ranked[last], np.cumsum(truth)[last].astype(float), np.cumsum(~truth)[last].astype(float)


THRESHOLD_RULES = ("max_f1", "max_f1_at_reference_prevalence", "max_balanced_accuracy")


def best_threshold(
    labels: np.ndarray, scores: np.ndarray, rule: str, tie_break: float = 0.5
) -> float:
    """The distinct score t (``scores >= t`` called positive) that maximises F1
    (``rule="max_f1"``), F1 with the classes reweighted to the IDC references' prevalence
    (``"max_f1_at_reference_prevalence"``, `metrics.f1_at_prevalence`: the operating point
    for a population of that prevalence, whatever these images' own) or balanced accuracy
    (``"max_balanced_accuracy"``, Youden's J) on these images; ties go to the one nearest
    ``tie_break``. ``tie_break`` where a class is missing.

    Raises:
        ValueError: an unknown rule.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}: {', '.join(THRESHOLD_RULES)}")
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if not pos or not neg:
        return float(tie_break)
    candidates, tp, fp = operating_points(labels, scores)
    if rule == "max_f1":
        value = 2 * tp / (tp + pos + fp)  # 2TP / (2TP + FP + FN), FN = pos - TP
    elif rule == "max_f1_at_reference_prevalence":
        value = metrics.f1_from_rates(tp / pos, fp / neg)
    else:
        value = (tp / pos + (neg - fp) / neg) / 2
    best = np.flatnonzero(np.isclose(value, value.max(), rtol=0, atol=1e-12))
    return float(candidates[best[np.argmin(np.abs(candidates[best] - tie_break))]])


def operating_thresholds(
    labels: np.ndarray, scores: np.ndarray, target_sensitivity: float
) -> dict[str, float]:
    """The three operating thresholds a card records, all chosen on these (eval) images:
    ``sensitivity`` (the highest keeping ``target_sensitivity``; 0.5 without positives),
    ``max_f1`` and ``max_balanced_accuracy`` (`best_threshold`)."""
    sensitivity = threshold_for_sensitivity(labels, scores, target_sensitivity)
    return {
        "sensitivity": sensitivity if math.isfinite(sensitivity) else 0.5,
        "max_f1": best_threshold(labels, scores, "max_f1"),
        "max_balanced_accuracy": best_threshold(labels, scores, "max_balanced_accuracy"),
    }


def point_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, balanced accuracy, F1 and F1 at the IDC references'
    prevalence (`metrics.f1_at_prevalence`) of ``scores >= threshold``, without CIs."""
    m = metrics.binary_metrics(labels, scores, threshold)
    labels = np.asarray(labels).astype(int)
    observed = float(labels.mean()) if len(labels) else float("nan")
    return {
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "balanced_accuracy": (m["sensitivity"] + m["specificity"]) / 2,
        "f1": metrics.f1_at_prevalence(labels, scores, threshold, observed),
        "f1_at_reference_prevalence": metrics.f1_at_prevalence(labels, scores, threshold),
    }


def slide_context_block(
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    choose: tuple[np.ndarray, np.ndarray, np.ndarray],
    test_xy: np.ndarray | None,
    choose_xy: np.ndarray | None,
    rule: str,
    target_sensitivity: float,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Slide-context figures (`breastdx_core.slide_context`: each patch's probability
    smoothed with its slide neighbours', the width chosen on eval), reported beside the
    per-patch ones; or why there are none (patches without x/y)."""
    from breastdx_core import slide_context

    if test_xy is None or choose_xy is None:
        return {
            "available": False,
            "note": "the patches carry no x/y in their file names (IDC's _x<X>_y<Y>): "
            "no slide context, per-patch figures only",
        }
    y, s, g = (np.asarray(a) for a in test)
    cy, cs, cg = (np.asarray(a) for a in choose)
    chosen = slide_context.choose_sigma(cy, cs, choose_xy[:, 0], choose_xy[:, 1], cg)
    smooth_eval = slide_context.slide_context(
        cs, choose_xy[:, 0], choose_xy[:, 1], cg, chosen["sigma"]
    )
    smooth_test = slide_context.slide_context(s, test_xy[:, 0], test_xy[:, 1], g, chosen["sigma"])
    threshold = operating_thresholds(cy, smooth_eval, target_sensitivity)[rule]
    return {
        "available": True,
        "sigma_grid_steps": chosen["sigma"],
        "chosen_on": "eval",
        "eval_auc_by_sigma": {str(k): v for k, v in chosen["auc"].items()},
        "rule": rule,
        "threshold": threshold,
        "auc": {
            "value": metrics.roc_auc(y, smooth_test),
            "ci95": metrics.patient_bootstrap(y, smooth_test, g, resamples=resamples, seed=seed),
        },
        "at_threshold": point_metrics(y, smooth_test, threshold),
        "note": "slide context: each patch's probability averaged with its slide neighbours' (Gaussian); "
        "not comparable with per-patch figures or the per-patch references",
    }


def threshold_for_specificity(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The lowest threshold t with specificity(scores >= t) >= ``target`` (t is just above
    the highest negative score that must be called negative). NaN without negatives."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    negatives = np.sort(scores[~labels])
    if not len(negatives):
        return float("nan")
    keep = int(math.ceil(target * len(negatives) - 1e-9))  # negatives that must score < t
    if keep <= 0:
        return float(negatives[0])
    return float(np.nextafter(negatives[keep - 1], np.inf))


# --- curves ------------------------------------------------------------------------------
def roc_curve(labels: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    """False and true positive rates at every distinct score (descending thresholds)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(scores)[::-1]
    pos, neg = max(labels.sum(), 1), max((~labels).sum(), 1)
    tpr = [0.0] + [float(np.sum(labels & (scores >= t)) / pos) for t in thresholds]
    fpr = [0.0] + [float(np.sum(~labels & (scores >= t)) / neg) for t in thresholds]
    return {"fpr": fpr, "tpr": tpr, "thresholds": [float("inf")] + thresholds.tolist()}


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    """Precision and recall at every distinct score (descending thresholds)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(scores)[::-1]
    pos = max(labels.sum(), 1)
    precision, recall = [], []
    for t in thresholds:
        called = scores >= t
        precision.append(float(np.sum(labels & called) / max(called.sum(), 1)))
        recall.append(float(np.sum(labels & called) / pos))
    return {"precision": precision, "recall": recall, "thresholds": thresholds.tolist()}


def calibration(
    labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """Reliability in ``bins`` equal-width bins of [0, 1]: mean score, fraction positive,
    count per bin, and the expected calibration error (count-weighted |gap|)."""
    labels, scores = np.asarray(labels).astype(float), np.asarray(scores, dtype=np.float64)
    index = np.clip((scores * bins).astype(int), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        mean_score = float(scores[members].mean()) if n else None
        positive = float(labels[members].mean()) if n else None
        if n:
            ece += n / len(scores) * abs(mean_score - positive)
        rows.append(
            {
                "bin": [b / bins, (b + 1) / bins],
                "n": n,
                "mean_score": mean_score,
                "fraction_positive": positive,
            }
        )
    return {"bins": rows, "ece": float(ece)}


# --- metrics with CIs --------------------------------------------------------------------
def _at(name: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """The metric ``name`` of ``scores >= threshold``, from the confusion counts."""

    def fn(y: np.ndarray, s: np.ndarray) -> float:
        cm = metrics.confusion(y, s, threshold)
        num, den = {
            "accuracy": (cm["tp"] + cm["tn"], sum(cm.values())),
            "sensitivity": (cm["tp"], cm["tp"] + cm["fn"]),
            "specificity": (cm["tn"], cm["tn"] + cm["fp"]),
            "precision": (cm["tp"], cm["tp"] + cm["fp"]),
            "f1": (2 * cm["tp"], 2 * cm["tp"] + cm["fp"] + cm["fn"]),
        }[name]
        return num / den if den else float("nan")

    return fn


THRESHOLD_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1")


def metrics_with_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: Sequence[Any],
    threshold: float,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """AUC and the threshold metrics, each {value, n, ci95: {low, high, resamples} or None}.

    ``n`` is what the metric is a fraction of: all images for accuracy and AUC,
    positives for sensitivity, negatives for specificity, predicted positives for
    precision, positives or predicted positives for F1. The CI resamples whole
    patients (``groups``).
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    cm = metrics.confusion(labels, scores, threshold)
    n_of = {
        "auc": len(labels),
        "accuracy": len(labels),
        "sensitivity": cm["tp"] + cm["fn"],
        "specificity": cm["tn"] + cm["fp"],
        "precision": cm["tp"] + cm["fp"],
        "f1": cm["tp"] + cm["fp"] + cm["fn"],
    }
    fns = {"auc": metrics.roc_auc, **{name: _at(name, threshold) for name in THRESHOLD_METRICS}}
    result = {}
    for name, fn in fns.items():
        value = fn(labels, scores)
        result[name] = {
            "value": value,
            "n": int(n_of[name]),
            "ci95": metrics.patient_bootstrap(
                labels, scores, groups, metric=fn, resamples=resamples, seed=seed
            ),
        }
    return result


def patient_level(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: Sequence[Any],
    threshold: float,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """One score per patient (their highest patch score; label: any positive patch), the
    patient metrics, and the tumour burden (fraction of positive patches) agreement."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    patients = np.unique(groups)
    p_label, p_score, true_burden, called_burden = [], [], [], []
    for patient in patients:
        members = groups == patient
        p_label.append(int(labels[members].max()))
        p_score.append(float(scores[members].max()))
        true_burden.append(float(labels[members].mean()))
        called_burden.append(float((scores[members] >= threshold).mean()))
    p_label, p_score = np.array(p_label), np.array(p_score)
    result: dict[str, Any] = {
        "aggregation": (
            f"patient score = {PATIENT_AGGREGATION} of their images' scores (patches or mammograms); "
            "patient label = 1 if any image is 1"
        ),
        "n_patients": int(len(patients)),
        "patients_per_class": [int((p_label == 0).sum()), int((p_label == 1).sum())],
        "confusion": metrics.confusion(p_label, p_score, threshold),
    }
    both = 0 < p_label.sum() < len(p_label)
    result["metrics"] = metrics_with_ci(p_label, p_score, patients, threshold, resamples, seed)
    if not both:
        result["note"] = (
            f"every patient in this split has label {int(p_label[0]) if len(p_label) else '-'}: "
            "AUC and the rates of the other class are undefined (as in the IDC set, where every "
            "patient has IDC somewhere); see the burden agreement instead"
        )
    t_b, c_b = np.array(true_burden), np.array(called_burden)
    result["burden"] = {
        "definition": (
            "fraction of a patient's images (patches or mammograms) that are positive: true vs called "
            "at the operating threshold"
        ),
        "mae": float(np.mean(np.abs(t_b - c_b))) if len(t_b) else float("nan"),
        "pearson_r": (
            float(np.corrcoef(t_b, c_b)[0, 1])
            if len(t_b) > 1 and t_b.std() > 0 and c_b.std() > 0
            else float("nan")
        ),
        "per_patient": [
            {"patient": str(p.decode() if isinstance(p, bytes) else p), "true": t, "called": c}
            for p, t, c in zip(patients, true_burden, called_burden)
        ],
    }
    return result


def temperature_scaling(
    fit: dict[str, Any] | None, labels: np.ndarray, scores: np.ndarray, n_classes: int
) -> dict[str, Any] | None:
    """The Trainer's temperature scaling (card field ``calibration``) seen on the
    reported split: the scores before scaling and their reliability (two classes: the
    scaling is inverted exactly, ``logit_before = T * logit_after``), beside the fit's own
    eval-split ECE before and after. None when the model was not calibrated."""
    if not fit or fit.get("method") != "temperature":
        return None
    temperature = float(fit["temperature"])
    out = {
        "temperature": temperature,
        "fitted_on": fit.get("fitted_on"),
        "eval_n": fit.get("n"),
        "eval_ece_before": fit.get("ece_before"),
        "eval_ece_after": fit.get("ece_after"),
        "before": None,
    }
    if n_classes == 2 and len(scores):
        clipped = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
        before = 1.0 / (1.0 + np.exp(-temperature * np.log(clipped / (1 - clipped))))
        out["before"] = calibration(labels, before)
    return out


def build_report(
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    choose: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    target_sensitivity: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    card: dict[str, Any] | None = None,
    splits: dict[str, Any] | None = None,
    synthetic: bool = False,
    class_names: Sequence[str] = ("negative", "positive"),
    operating_rule: str = "sensitivity",
    test_xy: np.ndarray | None = None,
    choose_xy: np.ndarray | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict.

    Args:
        test: (labels 0/1 [n], positive scores [n], patient ids [n]) of the split reported on.
        choose: the same for the split the thresholds are chosen on (eval).
        target_sensitivity: the ``sensitivity`` rule's threshold keeps this sensitivity on
            ``choose``.
        operating_rule: which of `operating_thresholds`' rules is the operating threshold
            (the decision rule's fallback where conformal coverage cannot be claimed).
        test_xy, choose_xy: [n, 2] the patches' x/y in pixels (IDC names), or None: the
            report's ``slide_context`` block (`slide_context_block`).
        card: the model card (training history, diagnostics, version).
        splits: images and patients per class and split.
        synthetic: the data are the embedded synthetic set.
    """
    y, s, g = (np.asarray(a) for a in test)
    cy, cs, _ = (np.asarray(a) for a in choose)
    if operating_rule not in OPERATING_RULES:
        raise ValueError(f"operating_rule must be one of {OPERATING_RULES}, got {operating_rule!r}")
    candidates = operating_thresholds(cy, cs, target_sensitivity)
    operating = candidates[operating_rule]
    card = card or {}
    report = {
        "title": f"Evaluation report: {card.get('model_name', 'model')} version {card.get('version', '?')}",
        "research_use": contract.RESEARCH_ONLY,
        "synthetic_data": bool(synthetic),
        "data_note": SYNTHETIC_NOTE
        if synthetic
        else "Metrics of the data set the pipeline ran on.",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {
            k: card.get(k)
            for k in (
                "model_name",
                "version",
                "backbone",
                "weights",
                "pipeline_run_id",
                "trained_model_uri",
                "hyperparameters",
                "parameters",
            )
        },
        "class_names": list(class_names),
        "split": "test (patient-grouped, held out); thresholds chosen on eval",
        "n_images": int(len(y)),
        "n_patients": int(len(np.unique(g))),
        "bootstrap": {"unit": "patient", "resamples": resamples, "level": 0.95, "seed": seed},
        "thresholds": {
            "default": 0.5,
            "operating": {
                "value": operating,
                "rule": operating_rule,
                "target_sensitivity": target_sensitivity,
                "chosen_on": "eval",
            },
            # Every rule's threshold, chosen on eval, with the test figures it gives.
            "candidates": {
                rule: {"value": t, "chosen_on": "eval", "test": point_metrics(y, s, t)}
                for rule, t in candidates.items()
            },
        },
        "image_level": {
            "at_0.5": metrics_with_ci(y, s, g, 0.5, resamples, seed),
            "at_operating": metrics_with_ci(y, s, g, operating, resamples, seed),
            "confusion_at_0.5": metrics.confusion(y, s, 0.5),
            "confusion_at_operating": metrics.confusion(y, s, operating),
        },
        "patient_level": patient_level(y, s, g, operating, resamples, seed),
        "slide_context": slide_context_block(
            test, choose, test_xy, choose_xy, operating_rule, target_sensitivity, resamples, seed
        ),
        "curves": {"roc": roc_curve(y, s), "pr": pr_curve(y, s)},
        "calibration": calibration(y, s),
        "temperature_scaling": temperature_scaling(
            card.get("calibration"), y, s, len(card.get("class_names") or class_names)
        ),
        "splits": splits or {},
        "training_history": card.get("training_history", {}),
        "training_diagnostics": card.get("training_diagnostics"),
    }
    return report


def covered_with_ci(
    covered: np.ndarray, groups: Sequence[Any], resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The fraction of ``covered`` (a [n] bool: the true class in the set, or an image
    flagged) with n and a patient-bootstrap 95 % CI."""
    covered = np.asarray(covered, dtype=float)
    mean = lambda y, s: float(np.mean(s)) if len(s) else float("nan")  # noqa: E731
    return {
        "value": float(covered.mean()) if len(covered) else float("nan"),
        "n": int(len(covered)),
        "ci95": metrics.patient_bootstrap(
            covered, covered, groups, metric=mean, resamples=resamples, seed=seed
        ),
        "ci_method": "bootstrap over patients",
    }


def sample_warnings(splits: dict[str, dict[str, Any]], class_names: Sequence[str]) -> list[str]:
    """`model_card.small_sample_warnings` for the eval and test splits."""
    out: list[str] = []
    for split in ("eval", "test"):
        counts = splits.get(split)
        if counts:
            out += model_card.small_sample_warnings(
                counts["patients"], counts["per_class"], class_names, split
            )
    return out
