"""A sliding-window heatmap of patch-class probabilities over a whole mammogram.

The pushed whole-image model computes the window grid itself (its ``heatmap``
signature, components/mammo/export.py); `breastdx demo --variant mammo` maps that grid
back onto the image (`to_image_grid`, `malignant_map`) and saves `render_overlay`;
`sliding_window_heatmap` does the same with any predict function (tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from breastdx_core import contract


def window_origins(length: int, size: int, stride: int) -> np.ndarray:
    """Start positions of windows of ``size`` every ``stride`` along ``length``; the last
    window ends at the edge, so every pixel is covered."""
    if length <= size:
        return np.array([0])
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return np.array(starts)


def sliding_window_heatmap(
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    size: int,
    stride: int,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patch probabilities on a grid of windows.

    Args:
        predict: patches float32 [n, size, size, 1] -> probabilities [n, classes]
            (a Keras model's ``predict`` or a SavedModel call).
        image: float32 [h, w] in [0, 1] (the resized mammogram).
        size: patch side the classifier was trained on.
        stride: step between windows (size / 4 in the demo).

    Returns:
        (heatmap float32 [rows, cols, classes], row origins [rows], column origins [cols]).
    """
    rows, cols = (
        window_origins(image.shape[0], size, stride),
        window_origins(image.shape[1], size, stride),
    )
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
    patches = windows[rows][:, cols].reshape(-1, size, size)[..., None].astype(np.float32)
    out = [
        np.asarray(predict(patches[i : i + batch_size])) for i in range(0, len(patches), batch_size)
    ]
    probabilities = np.concatenate(out)
    return probabilities.reshape(len(rows), len(cols), -1), rows, cols


def to_image_grid(
    heatmap: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int, shape: Sequence[int]
) -> np.ndarray:
    """Per-pixel mean of the windows covering it: float32 [h, w, classes]."""
    total = np.zeros((shape[0], shape[1], heatmap.shape[-1]), np.float32)
    count = np.zeros((shape[0], shape[1], 1), np.float32)
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            total[top : top + size, left : left + size] += heatmap[i, j]
            count[top : top + size, left : left + size] += 1
    return total / np.maximum(count, 1)


def malignant_map(pixel_probabilities: np.ndarray) -> np.ndarray:
    """P(malignant calcification) + P(malignant mass), float32 [h, w]."""
    names = contract.CBIS_PATCH_CLASSES
    return (
        pixel_probabilities[..., names.index("calcification_malignant")]
        + pixel_probabilities[..., names.index("mass_malignant")]
    )


def render_overlay(image: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The mammogram in grey with ``score`` (in [0, 1]) in red: uint8 [h, w, 3]."""
    grey = np.clip(image, 0, 1)
    red = np.clip(score, 0, 1)
    rgb = np.stack([np.maximum(grey, red), grey * (1 - 0.6 * red), grey * (1 - 0.6 * red)], axis=-1)
    return (rgb * contract.PIXEL_MAX).astype(np.uint8)
