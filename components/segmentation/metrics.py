"""Segmentation metrics and the "black-box" area classifier, in pure NumPy.

The U-Net Trainer module (`components/segmentation/trainer/unet_trainer_module.py`)
calls `summarize` on the eval split's predicted masks and `fit_area_threshold` /
`area_classifier_report` for the black-box classification; the tests check every
function against hand-computed values. No TensorFlow here, so the web app or a report
script can import it too.

Conventions (stated because papers differ):

* Masks are binarised at ``threshold`` (probabilities) or taken as booleans.
* Per image: Dice = 2|P∩T| / (|P|+|T|), Jaccard = |P∩T| / |P∪T|; both are 1.0 when
  prediction and target are both empty (a correctly empty benign/normal mask).
  TPR (sensitivity) = TP / (TP+FN) is undefined (NaN) on an empty target;
  FPR = FP / (FP+TN) is undefined on an all-lesion target.
* Summaries give the mean over images (NaNs left out) and the pixel-pooled value
  over the whole set ("global"): both are reported because the mean weighs small
  lesions as much as large ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from breastdx_core.metrics import roc_auc  # the project's one roc_auc(labels, scores)

METRICS = ("dice", "jaccard", "tpr", "fpr")


def binarize(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask: booleans as they are, numbers ``> threshold`` (255-valued masks too)."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if mask.dtype == np.uint8 and mask.max(initial=0) > 1:
        return mask > 127
    return mask > threshold


def confusion(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    """Pixel counts tp, fp, fn, tn of one mask (or a stack) against its target."""
    p, t = binarize(pred, threshold), binarize(target, threshold)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    return {
        "tp": int(np.sum(p & t)),
        "fp": int(np.sum(p & ~t)),
        "fn": int(np.sum(~p & t)),
        "tn": int(np.sum(~p & ~t)),
    }


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num) / den if den else empty


def from_confusion(c: dict[str, int]) -> dict[str, float]:
    """Dice, Jaccard, TPR and FPR from pixel counts (conventions in the module docstring)."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, 1.0),
        "jaccard": _ratio(tp, tp + fp + fn, 1.0),
        "tpr": _ratio(tp, tp + fn, float("nan")),
        "fpr": _ratio(fp, fp + tn, float("nan")),
    }


def dice(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    return from_confusion(confusion(pred, target, threshold))["dice"]


def jaccard(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    return from_confusion(confusion(pred, target, threshold))["jaccard"]


def tpr(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    return from_confusion(confusion(pred, target, threshold))["tpr"]


def fpr(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    return from_confusion(confusion(pred, target, threshold))["fpr"]


def summarize(preds: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Mean-over-images and pixel-pooled metrics of a stack of masks.

    Args:
        preds: [N, H, W] probabilities (or booleans).
        targets: [N, H, W] target masks (booleans, 0/1 or 0/255).

    Returns:
        ``dice``, ``jaccard``, ``tpr``, ``fpr`` (means over images, NaN-free where any
        image defines them) and ``global_dice`` ... ``global_fpr``, plus ``n_images``.
    """
    preds, targets = np.asarray(preds), np.asarray(targets)
    if preds.ndim != 3 or preds.shape != targets.shape:
        raise ValueError(
            f"expected [N, H, W] predictions and targets of one shape, got {preds.shape} "
            f"and {targets.shape}"
        )
    per_image = [from_confusion(confusion(p, t, threshold)) for p, t in zip(preds, targets)]
    out: dict[str, float] = {"n_images": float(len(per_image))}
    for name in METRICS:
        values = np.array([m[name] for m in per_image], dtype=np.float64)
        out[name] = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    pooled = from_confusion(confusion(preds, targets, threshold))
    out.update({f"global_{name}": value for name, value in pooled.items()})
    return out


def mask_area(masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Fraction of each mask's pixels that are lesion: float64 [N] in [0, 1]."""
    b = binarize(np.asarray(masks), threshold)
    return b.reshape(len(b), -1).mean(axis=1)


def fit_area_threshold(areas: Sequence[float], positive: Sequence[bool]) -> float:
    """The area threshold (classify positive when area > threshold) that maximises
    Youden's J = TPR - FPR on these images; ties go to the smaller threshold.
    Candidates are the midpoints between sorted distinct areas, plus just below the
    smallest (everything positive)."""
    areas = np.asarray(areas, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if areas.shape != positive.shape or areas.size == 0:
        raise ValueError(
            f"need one label per area, got {areas.shape} areas and {positive.shape} labels"
        )
    values = np.unique(areas)
    candidates = (
        np.concatenate([[values[0] - 1e-9], (values[:-1] + values[1:]) / 2])
        if values.size > 1
        else np.array([values[0] - 1e-9])
    )
    best, best_j = float(candidates[0]), -np.inf
    for t in candidates:
        predicted = areas > t
        j = _rate(predicted & positive, positive) - _rate(predicted & ~positive, ~positive)
        if j > best_j + 1e-12:
            best, best_j = float(t), j
    return best


def _rate(hits: np.ndarray, population: np.ndarray) -> float:
    n = int(population.sum())
    return float(hits.sum()) / n if n else 0.0


def area_classifier_report(
    areas: Sequence[float], positive: Sequence[bool], threshold: float
) -> dict[str, float]:
    """How the black-box classifier (positive when predicted area > threshold) does:
    threshold, accuracy, sensitivity, specificity and the ROC AUC of the area score."""
    areas = np.asarray(areas, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    predicted = areas > threshold
    return {
        "area_threshold": float(threshold),
        "accuracy": float(np.mean(predicted == positive)) if positive.size else float("nan"),
        "sensitivity": _rate(predicted & positive, positive),
        "specificity": _rate(~predicted & ~positive, ~positive),
        "auc": roc_auc(positive, areas),
        "n_images": float(positive.size),
    }
