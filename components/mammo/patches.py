"""Patch sets from whole mammograms (Shen et al. 2019, "Deep learning to improve breast
cancer detection on screening mammography").

CbisExampleGen (components/mammo/ingest.py) calls `extract_patches` per resized
mammogram; `write_patch_folders` stores a set in the class-folder layout
(``<class>/<patient_id>/<file>.png``), which the standard pipeline also reads
(``breastdx demo --task cbis --data-root <folder>``).

* S: per abnormality, one patch centred on its ROI; per image, one background patch.
* S10: per abnormality, ten patches around its ROI, each overlapping it >= 90 %; per
  image, ten background patches.

Overlap of a patch with a ROI is |patch ∩ ROI| / min(|patch|, |ROI|): for a ROI smaller
than the patch, the share of the ROI inside the patch; for a larger ROI, the share of
the patch that is ROI. Background patches touch no ROI of their image and lie mostly
on breast tissue (not the black film around it).
Five classes (contract.CBIS_PATCH_CLASSES): background, calcification benign and
malignant, mass benign and malignant.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from breastdx_core import contract
from components.mammo import images

MIN_ROI_OVERLAP = 0.9
MIN_TISSUE = 0.5  # share of a background patch that must be breast, not film
TISSUE_LEVEL = 0.1  # grey level above which a pixel counts as breast (images in [0, 1])
MAX_TRIES = 500
PATCH_SETS = {"S": 1, "S10": 10}


@dataclasses.dataclass(frozen=True)
class Patch:
    """One patch: pixels float32 [size, size] in [0, 1] and where it came from."""

    pixels: np.ndarray
    label: int  # index into contract.CBIS_PATCH_CLASSES
    top: int
    left: int
    overlap: float  # with its ROI (0.0 for background patches)
    source: str  # image id and abnormality, for tracing


def overlap(box: tuple[int, int, int], roi: np.ndarray) -> float:
    """|patch ∩ ROI| / min(|patch|, |ROI|) for the square patch (top, left, size)."""
    top, left, size = box
    inside = int(roi[top : top + size, left : left + size].sum())
    area = int(roi.sum())
    return inside / min(size * size, area) if area else 0.0


def roi_centre(roi: np.ndarray) -> tuple[float, float]:
    """Centre of the ROI's bounding box (row, column)."""
    ys, xs = np.nonzero(roi)
    return (ys.min() + ys.max()) / 2.0, (xs.min() + xs.max()) / 2.0


def _clamp(top: float, left: float, size: int, shape: tuple[int, int]) -> tuple[int, int]:
    return (
        int(np.clip(round(top), 0, shape[0] - size)),
        int(np.clip(round(left), 0, shape[1] - size)),
    )


def roi_patches(
    image: np.ndarray,
    roi: np.ndarray,
    label: int,
    size: int,
    count: int,
    rng: np.random.Generator,
    source: str = "",
) -> list[Patch]:
    """``count`` patches of side ``size`` around a ROI: the first centred on it, the rest
    at random shifts, every one with overlap >= MIN_ROI_OVERLAP. A ROI too large or too
    oddly shaped to give that many distinct patches gives fewer (never a worse one)."""
    if not roi.any():
        return []
    cy, cx = roi_centre(roi)
    top, left = _clamp(cy - size / 2, cx - size / 2, size, image.shape)
    found: list[Patch] = []
    seen = set()
    first = overlap((top, left, size), roi)
    if first >= MIN_ROI_OVERLAP:
        found.append(
            Patch(
                image[top : top + size, left : left + size].copy(), label, top, left, first, source
            )
        )
        seen.add((top, left))
    ys, xs = np.nonzero(roi)
    for _ in range(MAX_TRIES):
        if len(found) >= count:
            break
        # Centres anywhere a patch can still hold the ROI: within half a patch of it.
        y, x = (
            rng.uniform(ys.min() - size / 2, ys.max() + size / 2),
            rng.uniform(xs.min() - size / 2, xs.max() + size / 2),
        )
        top, left = _clamp(y - size / 2, x - size / 2, size, image.shape)
        if (top, left) in seen:
            continue
        share = overlap((top, left, size), roi)
        if share >= MIN_ROI_OVERLAP:
            seen.add((top, left))
            found.append(
                Patch(
                    image[top : top + size, left : left + size].copy(),
                    label,
                    top,
                    left,
                    share,
                    source,
                )
            )
    return found


def background_patches(
    image: np.ndarray,
    rois: np.ndarray,
    size: int,
    count: int,
    rng: np.random.Generator,
    source: str = "",
) -> list[Patch]:
    """``count`` patches that touch no ROI (``rois``: the union of the image's ROI masks)
    and lie at least MIN_TISSUE on breast tissue."""
    found: list[Patch] = []
    height, width = image.shape
    if height < size or width < size:
        return found
    tissue = image > TISSUE_LEVEL
    for _ in range(MAX_TRIES * max(1, count)):
        if len(found) >= count:
            break
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        if rois[top : top + size, left : left + size].any():
            continue
        if tissue[top : top + size, left : left + size].mean() < MIN_TISSUE:
            continue
        found.append(
            Patch(
                image[top : top + size, left : left + size].copy(),
                contract.CBIS_PATCH_CLASSES.index("background"),
                top,
                left,
                0.0,
                source,
            )
        )
    return found


def extract_patches(
    image: np.ndarray,
    rois: Sequence[tuple[np.ndarray, int]],
    size: int,
    patch_set: str = "S",
    seed: int = 0,
    source: str = "",
) -> list[Patch]:
    """The S or S10 patches of one (resized) mammogram.

    Args:
        image: float32 [h, w] in [0, 1].
        rois: (mask bool [h, w], patch class) per abnormality, on the image's grid.
        size: patch side (224 in the study).
        patch_set: "S" (1 + 1) or "S10" (10 + 10).
        seed: the same seed gives the same patches.
        source: a name for tracing (the image id).
    """
    if patch_set not in PATCH_SETS:
        raise ValueError(f"patch_set must be one of {sorted(PATCH_SETS)}, got {patch_set!r}")
    count = PATCH_SETS[patch_set]
    rng = np.random.default_rng(seed)
    union = np.zeros(image.shape, bool)
    patches: list[Patch] = []
    for index, (mask, label) in enumerate(rois):
        union |= mask
        patches += roi_patches(image, mask, label, size, count, rng, f"{source}#{index + 1}")
    patches += background_patches(image, union, size, count, rng, f"{source}#bg")
    return patches


def write_patch_folders(
    root: str, patches: Sequence[Patch], patient_id: str, prefix: str
) -> dict[str, int]:
    """Stores patches as ``root/<class name>/<patient_id>/<prefix>_<n>.png`` (the
    class-folder layout with a patient level); returns counts per class name."""
    counts: dict[str, int] = {}
    for n, patch in enumerate(patches):
        name = contract.CBIS_PATCH_CLASSES[patch.label]
        images.save_png(os.path.join(root, name, patient_id, f"{prefix}_{n:02d}.png"), patch.pixels)
        counts[name] = counts.get(name, 0) + 1
    return counts


def as_arrays(patches: Sequence[Patch]) -> tuple[np.ndarray, np.ndarray]:
    """Stacked pixels float32 [n, size, size, 1] and labels int64 [n]."""
    if not patches:
        return np.zeros((0, 0, 0, 1), np.float32), np.zeros((0,), np.int64)
    return (
        np.stack([p.pixels for p in patches])[..., None].astype(np.float32),
        np.array([p.label for p in patches], np.int64),
    )
