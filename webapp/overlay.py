"""Draws a Grad-CAM heatmap over the uploaded image, for display only.

``webapp.service`` calls :func:`evidence_png` (and ``webapp.kinds`` the colour map). The
model never sees this picture: it got the original bytes. Pillow scales the image up for
the screen and blends the heatmap (at the model's input size) over it. For images the
model padded (the IDC set's smaller edge patches, letterboxed ultrasound) the overlay is
approximate.

The model's Grad-CAM is scaled to its own maximum in every image, so its colours alone
cannot be compared between images. The picture is therefore drawn on one fixed scale for
every image: strength = Grad-CAM attention x the probability of the class the model
answered, in red where that class is the positive one and in blue otherwise, transparent
at 0 and opaque-most at 1 (the page's legend, ``EVIDENCE_*``).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image, ImageOps

DISPLAY_SIZE = 256  # pixels on the longer side of the picture shown
ALPHA = 0.45  # heatmap weight in the blend
BYTE_MAX = 255
COLD, WARM, HOT = "#1a1aa6", "#f5e50a", "#e0201b"  # low, middle and high attention


def _for_display(image_bytes: bytes) -> Image.Image:
    """The image as RGB, scaled (nearest neighbour: pathologists want to see pixels) for the screen."""
    with Image.open(io.BytesIO(image_bytes)) as source:
        picture = source.convert("RGB")
    scale = DISPLAY_SIZE / max(picture.size)
    return picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.NEAREST
    )


def heatmap_image(heatmap: Sequence[Sequence[float]]) -> Image.Image:
    """A greyscale image of a heatmap with values in [0, 1] (values outside are clipped)."""
    height, width = len(heatmap), len(heatmap[0])
    levels = bytes(
        int(round(min(1.0, max(0.0, float(v))) * BYTE_MAX)) for row in heatmap for v in row
    )
    return Image.frombytes("L", (width, height), levels)


def overlay_png(image_bytes: bytes, heatmap: list[list[float]]) -> bytes:
    """The image with the heatmap blended over it, as PNG bytes.

    Args:
        image_bytes: the uploaded (already checked) image.
        heatmap: [h][w] floats in [0, 1].
    """
    picture = _for_display(image_bytes)
    size = picture.size
    heat = heatmap_image(heatmap).resize(size, Image.BILINEAR)
    coloured = ImageOps.colorize(heat, black=COLD, mid=WARM, white=HOT)
    buffer = io.BytesIO()
    Image.blend(picture, coloured, ALPHA).save(buffer, format="PNG")
    return buffer.getvalue()


EVIDENCE_POSITIVE = (224, 32, 27)  # attention toward the positive class
EVIDENCE_OTHER = (26, 90, 200)  # attention toward any other class
EVIDENCE_ALPHA = 0.75  # the blend's weight at strength 1


def evidence_png(
    image_bytes: bytes, heatmap: list[list[float]], weight: float, toward_positive: bool
) -> bytes:
    """The image with ``heatmap x weight`` blended over it on the fixed scale above; PNG bytes.

    Args:
        image_bytes: the uploaded (already checked) image.
        heatmap: [h][w] Grad-CAM in [0, 1] (each image scaled to its own maximum).
        weight: the answered class's probability, in [0, 1].
        toward_positive: red (the answered class is the positive one) or blue.
    """
    import numpy as np

    picture = _for_display(image_bytes)
    heat = heatmap_image(heatmap).resize(picture.size, Image.BILINEAR)
    strength = (
        np.asarray(heat, np.float32)[..., None] / BYTE_MAX * min(1.0, max(0.0, float(weight)))
    )
    colour = np.array(EVIDENCE_POSITIVE if toward_positive else EVIDENCE_OTHER, np.float32)
    base = np.asarray(picture, np.float32)
    alpha = strength * EVIDENCE_ALPHA
    blended = Image.fromarray((base * (1 - alpha) + colour * alpha).round().astype(np.uint8))
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:`` URI for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def original_png(image_bytes: bytes) -> bytes:
    """The uploaded image scaled for display without the heatmap (when there is none)."""
    picture = _for_display(image_bytes)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
