"""Slide context: a patch's probability read with its neighbours' on the slide. TF-free.

Patches of one patient tile one slide (the IDC file names carry the patch's x/y in
pixels). A pathologist reads a region, not an isolated 50-pixel square, so the second
stage here smooths a patient's grid of patch probabilities with a Gaussian (normalised
convolution: tiles absent from the grid, background, do not count as negatives). Its one
parameter, the width in grid steps, is chosen on eval patients (`choose_sigma`), never on
the patients it is applied to. The result is a *slide-context* probability, reported
beside the per-patch figures, never in their place (the published references are per
patch).

Called by `breastdx cv` (lab/cv.py), the evaluation report
(components/evaluation/statistics.py), bench/idc_budget.py, and the web app's mosaic and
map answers (`slide_context` on the tiles' probabilities and x/y).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from breastdx_core import metrics

IDC_STEP = 50  # pixels between neighbouring IDC patches (their side)
# Candidate widths in grid steps; 0 = no context (the per-patch probability itself).
SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
_XY = re.compile(r"_x(\d+)_y(\d+)")


def patch_xy(name: str) -> tuple[int, int] | None:
    """(x, y) in pixels from an IDC-style file name (``..._x1001_y1051_class0.png``), or None."""
    found = _XY.search(str(name))
    return (int(found.group(1)), int(found.group(2))) if found else None


def _gaussian_1d(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(grid: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable convolution with zero padding, same shape out."""
    radius = len(kernel) // 2
    padded = np.pad(grid, radius)
    height, width = grid.shape
    rows = sum(w * padded[i : i + height, :] for i, w in enumerate(kernel))
    return sum(w * rows[:, j : j + width] for j, w in enumerate(kernel))


def _one_slide(probs: np.ndarray, gx: np.ndarray, gy: np.ndarray, sigma: float) -> np.ndarray:
    gx, gy = gx - gx.min(), gy - gy.min()
    value = np.zeros((gx.max() + 1, gy.max() + 1))
    weight = np.zeros_like(value)
    np.add.at(value, (gx, gy), probs)
    np.add.at(weight, (gx, gy), 1.0)
    kernel = _gaussian_1d(sigma)
    value, weight = _blur(value, kernel), _blur(weight, kernel)
    return value[gx, gy] / np.maximum(weight[gx, gy], 1e-12)


def slide_context(
    probs: Sequence[float],
    xs: Sequence[float],
    ys: Sequence[float],
    groups: Sequence[str] | None = None,
    sigma: float = 1.0,
    step: float = IDC_STEP,
) -> np.ndarray:
    """Slide-context probabilities: each patch's probability averaged with its slide
    neighbours' under a Gaussian of ``sigma`` grid steps (0: unchanged).

    Args:
        probs: [n] positive-class probabilities of the patches.
        xs, ys: [n] the patches' positions in pixels (IDC: from the file name, `patch_xy`).
        groups: [n] the slide (patient) of each patch; None: one slide.
        sigma: the Gaussian's width in grid steps.
        step: pixels between neighbouring patches.

    Returns:
        float64 [n] in [0, 1], in the order given.

    Raises:
        ValueError: the arrays differ in length or sigma is negative.
    """
    probs = np.asarray(probs, dtype=np.float64)
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if not len(probs) == len(xs) == len(ys):
        raise ValueError(
            f"probs, xs and ys must have one entry per patch: {len(probs)}, {len(xs)}, {len(ys)}"
        )
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 grid steps, got {sigma}")
    if sigma == 0 or not len(probs):
        return probs.copy()
    groups = np.zeros(len(probs), dtype=int) if groups is None else np.asarray(groups)
    gx = np.round(xs / step).astype(np.int64)
    gy = np.round(ys / step).astype(np.int64)
    out = np.empty_like(probs)
    for group in np.unique(groups):
        mine = np.flatnonzero(groups == group)
        out[mine] = _one_slide(probs[mine], gx[mine], gy[mine], float(sigma))
    return np.clip(out, 0.0, 1.0)


def choose_sigma(
    labels: Sequence[int],
    probs: Sequence[float],
    xs: Sequence[float],
    ys: Sequence[float],
    groups: Sequence[str],
    sigmas: Sequence[float] = SIGMAS,
    step: float = IDC_STEP,
) -> dict:
    """The width whose slide-context probabilities rank the (eval) patches best: AUC per
    candidate, ties to the smallest width. With one class present: 0 (no context).

    Returns:
        {"sigma": float, "auc": {sigma: AUC}}.
    """
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return {"sigma": 0.0, "auc": {}}
    aucs = {
        float(s): metrics.roc_auc(labels, slide_context(probs, xs, ys, groups, s, step))
        for s in sigmas
    }
    best = max(aucs.values())
    sigma = min(s for s, a in aucs.items() if a >= best - 1e-12)
    return {"sigma": sigma, "auc": aucs}
