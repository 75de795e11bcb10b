"""Every kind of pushed model in the web app: classifiers, the U-Net, the whole-mammogram model.

``webapp.ui`` and ``webapp.api`` call :func:`predict_any` for an upload. The served
version's model card says what kind of model answers (:func:`kind_of`):

* a classifier (IDC's 2 classes, BUSI's 3, CBIS patches' 5): ``webapp.service`` as before;
  the page lists every class's probability;
* a segmentation model (the U-Net's card: ``variant: segmentation``; signature
  ``segment``): the lesion mask over the image and its area;
* a whole-image model with a sliding-window ``heatmap`` signature (the CBIS-DDSM
  whole-mammogram card's ``input_contract.heatmap_signature``): the class answer plus the
  malignancy heatmap over the mammogram.

The model's own graphs decode and fit the image; this module only maps their outputs
back onto the picture shown (both models letterbox: aspect kept, padded centred).
No TensorFlow here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from breastdx_core import contract
from webapp import overlay, service
from webapp.clients import PredictionError
from webapp.uploads import Upload

KIND_CLASSIFIER = "classifier"
KIND_SEGMENTATION = "segmentation"
KIND_WHOLE_IMAGE = "whole_image"
SEGMENT_SIGNATURE = (
    "segment"  # components/segmentation/trainer/unet_trainer_module.SIGNATURE_SEGMENT
)
OUTPUT_MASK = "mask"
OUTPUT_MASK_AREA = "mask_area"
MASK_LEVEL = 0.5  # the U-Net's own threshold for a lesion pixel (its mask_area uses it)
MASK_COLOUR = (224, 32, 27)
MALIGNANT_WORD = "malignant"
DIGITS = 4
# Grey level (of 255) above which a mammogram pixel is breast, as components/mammo/patches.TISSUE_LEVEL
# (0.1; that module imports TensorFlow): the film around the breast is never shown as malignant.
BREAST_LEVEL = 0.1 * overlay.BYTE_MAX


def kind_of(card: dict[str, Any]) -> str:
    """The model kind a card describes (module docstring)."""
    card = card if isinstance(card, dict) else {}
    contract_ = card.get("input_contract") or {}
    if card.get("variant") == KIND_SEGMENTATION or contract_.get("signature") == SEGMENT_SIGNATURE:
        return KIND_SEGMENTATION
    if contract_.get("heatmap_signature"):  # the whole-mammogram card (variant "whole_image")
        return KIND_WHOLE_IMAGE
    return KIND_CLASSIFIER


def letterbox(width: int, height: int, frame: Sequence[int]) -> tuple[int, int, int, int]:
    """(top, left, content height, content width) of an image fitted into ``frame``
    (height, width) with its aspect ratio kept and centred padding, as
    ``tf.image.resize_with_pad`` places it."""
    frame_h, frame_w = int(frame[0]), int(frame[1])
    ratio = min(frame_h / height, frame_w / width)
    content_h, content_w = max(1, int(height * ratio)), max(1, int(width * ratio))
    return (frame_h - content_h) // 2, (frame_w - content_w) // 2, content_h, content_w


def _content(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """The part of a model-frame array that holds the image (padding cut off)."""
    top, left, content_h, content_w = letterbox(width, height, array.shape[:2])
    return array[top : top + content_h, left : left + content_w]


def _tint(upload: Upload, level: np.ndarray, colour_map: bool) -> bytes:
    """The upload for display with ``level`` ([h, w] in [0, 1] over the whole image) blended
    over it: a colour map over the breast (``colour_map``), or a red mask."""
    picture = overlay._for_display(upload.data)
    levels = Image.fromarray(
        (np.clip(level, 0, 1) * overlay.BYTE_MAX).astype(np.uint8), "L"
    ).resize(picture.size, Image.BILINEAR)
    if colour_map:
        coloured = ImageOps.colorize(
            levels, black=overlay.COLD, mid=overlay.WARM, white=overlay.HOT
        )
        breast = np.asarray(picture.convert("L")) > BREAST_LEVEL
        mixed = np.asarray(Image.blend(picture, coloured, overlay.ALPHA))
        blended = Image.fromarray(np.where(breast[..., None], mixed, np.asarray(picture)))
    else:  # a mask: tint lesion pixels only, leave the rest as it was
        alpha = np.asarray(levels, np.float32)[..., None] / overlay.BYTE_MAX * overlay.ALPHA
        base = np.asarray(picture, np.float32)
        blended = Image.fromarray(
            (base * (1 - alpha) + np.array(MASK_COLOUR) * alpha).astype(np.uint8)
        )
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG")
    return buffer.getvalue()


def describe_segmentation(
    upload: Upload,
    row: dict[str, Any],
    card: dict[str, Any],
    model_name: str,
    version: str | None,
    with_overlay: bool,
) -> dict[str, Any]:
    """One image's segmentation answer: lesion area (of the image and of the model frame), the
    area rule's call and the mask overlay."""
    try:
        mask = np.asarray(row[OUTPUT_MASK], np.float32)
        frame_area = float(row[OUTPUT_MASK_AREA])
    except (KeyError, TypeError, ValueError) as err:
        raise PredictionError(
            f"model {model_name} answered {SEGMENT_SIGNATURE} without {OUTPUT_MASK} and "
            f"{OUTPUT_MASK_AREA}: {err}"
        ) from None
    inside = _content(mask, upload.width, upload.height)
    lesion = inside > MASK_LEVEL
    area_rule = ((card.get("evaluation") or {}).get("metrics") or {}).get("area_classifier") or {}
    positive = row.get(contract.OUTPUT_POSITIVE)
    result = {
        "file": upload.name,
        "kind": KIND_SEGMENTATION,
        "lesion_fraction": round(float(lesion.mean()), DIGITS),
        "lesion_pixels": int(round(float(lesion.mean()) * upload.width * upload.height)),
        "image_pixels": upload.width * upload.height,
        "mask_area": round(frame_area, DIGITS),  # the model's output: fraction of its padded frame
        "mask_size": list(mask.shape),
        "area_threshold": area_rule.get("area_threshold"),
        "area_positive": None if positive is None else bool(float(positive) >= MASK_LEVEL),
        "positive_class": area_rule.get("positive_class") or card.get("positive_class"),
        "model_name": model_name,
        "model_version": version,
        "research_only": contract.RESEARCH_ONLY,
    }
    if with_overlay:
        result["overlay_png"] = overlay.data_uri(_tint(upload, inside, colour_map=False))
    return result


def malignant_indices(class_names: Sequence[str]) -> list[int]:
    return [i for i, name in enumerate(class_names) if MALIGNANT_WORD in name.lower()]


def window_heatmap(grid: np.ndarray, frame: Sequence[int], patch: int) -> np.ndarray:
    """[frame_h, frame_w] score from a [rows, cols] window grid: each pixel takes the highest
    score of the windows over it (windows are ``patch`` wide, spaced evenly)."""
    rows, cols = grid.shape
    frame_h, frame_w = int(frame[0]), int(frame[1])
    stride_y = (frame_h - patch) / max(rows - 1, 1)
    stride_x = (frame_w - patch) / max(cols - 1, 1)
    heat = np.zeros((frame_h, frame_w), np.float32)
    for r in range(rows):
        y = int(round(r * stride_y))
        for c in range(cols):
            x = int(round(c * stride_x))
            heat[y : y + patch, x : x + patch] = np.maximum(
                heat[y : y + patch, x : x + patch], grid[r, c]
            )
    return heat


def add_window_heatmap(
    result: dict[str, Any], upload: Upload, heat_row: Any, card: dict[str, Any], with_overlay: bool
) -> dict[str, Any]:
    """Adds the sliding-window malignancy heatmap to a whole-image classifier's result."""
    heat = np.asarray(heat_row, np.float32)  # [rows, cols, patch classes]
    if heat.ndim != 3 or heat.shape[-1] != len(contract.CBIS_PATCH_CLASSES):
        raise PredictionError(
            f"the heatmap signature answered shape {list(heat.shape)}; expected "
            f"[rows, cols, {len(contract.CBIS_PATCH_CLASSES)}]"
        )
    grid = heat[..., malignant_indices(contract.CBIS_PATCH_CLASSES)].sum(-1)
    frame = card.get("image_size") or contract.CBIS_IMAGE_SIZE
    patch = int(card.get("patch_size") or contract.CBIS_DEMO_PATCH_SIZE)
    level = _content(window_heatmap(grid, frame, patch), upload.width, upload.height)
    result.update(
        {
            "kind": KIND_WHOLE_IMAGE,
            "window_grid": np.round(grid, DIGITS).tolist(),
            "window_classes": list(contract.CBIS_PATCH_CLASSES),
            "window_max": round(float(grid.max()), DIGITS),
            "heatmap": None,
        }
    )
    if with_overlay:
        result["overlay_png"] = overlay.data_uri(_tint(upload, level, colour_map=True))
    return result


def served_card(version: str | None) -> tuple[str | None, dict[str, Any]]:
    """(version, card) of the version a request will use; (version, {}) where the client
    cannot say (gRPC, Vertex AI): those are treated as classifiers."""
    client = service.client()
    if version is None and hasattr(client, "newest_version"):
        version = client.newest_version()
    return version, service.card_for(version)


def predict_any(
    uploads: list[Upload], version: str | None, with_overlay: bool
) -> tuple[str, list[dict[str, Any]]]:
    """(kind, results) for the uploads, whichever kind of model is served.

    Raises:
        PredictionError: from the client, or a model that breaks its kind's contract.
    """
    client = service.client()
    if not hasattr(client, "run_signature"):
        return KIND_CLASSIFIER, service.predict_uploads(uploads, version, with_overlay)
    chosen, card = served_card(version)
    kind = kind_of(card)
    images = [u.data for u in uploads]
    if kind == KIND_SEGMENTATION:
        rows, chosen = client.run_signature(images, SEGMENT_SIGNATURE, chosen)
        return kind, [
            describe_segmentation(u, r, card, client.model_name, chosen, with_overlay)
            for u, r in zip(uploads, rows)
        ]
    if (
        kind == KIND_CLASSIFIER
    ):  # the request's own version: the client's swap-over retry still applies
        results = service.predict_uploads(uploads, version, with_overlay)
    else:
        results = service.predict_uploads(uploads, chosen, with_overlay)
    if kind == KIND_WHOLE_IMAGE:
        signature = card["input_contract"]["heatmap_signature"]
        rows, _ = client.run_signature(images, signature, chosen)
        results = [
            add_window_heatmap(r, u, row, card, with_overlay)
            for r, u, row in zip(results, uploads, rows)
        ]
    else:
        for result in results:
            result["kind"] = KIND_CLASSIFIER
    return kind, results
