"""Reading mammograms and fitting them to the model's size without distortion.

`components.mammo.cbis` (sizes, to tell ROI masks from crops), `components.mammo.patches`
and CbisExampleGen (components/mammo/ingest.py) call these; every signature of the
exported models and both Trainers' inputs call `resize_keep_aspect` through
`components.mammo.records.decode_grey`, so training and serving fit an image with the
same TF ops.

* `read_image`: PNG/TIFF/JPEG with Pillow (8- or 16-bit), DICOM with pydicom, which is
  imported only when a ``.dcm`` file is read (it is optional: ``pip install pydicom``).
* `resize_keep_aspect`: scale so the image fits (1152x896 in the study), keeping its
  aspect ratio, then pad symmetrically (the odd pixel goes to the bottom/right).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from breastdx_core import contract, errors


@contextlib.contextmanager
def _mammogram_sized():
    """Lifts Pillow's decompression-bomb guard for this module's own reads only: full-field
    mammograms are large by nature; the process-wide limit (the web app's uploads rely on
    it) stays as it was."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


class ImageReadError(errors.UserError):
    """A mammogram, mask or crop could not be read (names the file and why)."""


def _is_dicom(path: str) -> bool:
    return path.lower().endswith(".dcm")


def _pydicom():
    try:
        import pydicom  # optional: only DICOM copies of the release need it
    except ImportError as err:
        raise ImageReadError(
            "reading .dcm files needs pydicom (pip install pydicom), or use a PNG/TIFF copy "
            "of the release"
        ) from err
    return pydicom


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels."""
    if _is_dicom(path):
        header = _pydicom().dcmread(path, stop_before_pixels=True)
        return int(header.Rows), int(header.Columns)
    with _mammogram_sized(), Image.open(path) as image:
        return image.height, image.width


def read_image(path: str) -> np.ndarray:
    """A grey image as float32 [h, w] in [0, 1]: 8-bit files divided by 255, 16-bit ones
    (DICOM, 16-bit PNG/TIFF) by their own maximum (the real release stores ~12-bit
    values in 16-bit words); colour files converted to grey.

    Raises:
        ImageReadError: unreadable file, or DICOM without pydicom.
    """
    try:
        if _is_dicom(path):
            pixels = _pydicom().dcmread(path).pixel_array
        else:
            with _mammogram_sized(), Image.open(path) as image:
                if image.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                    image = image.convert("L")
                pixels = np.asarray(image)
    except ImageReadError:
        raise
    except Exception as err:  # Pillow and pydicom raise many types for a bad file
        raise ImageReadError(f"cannot read image {path!r}: {err}") from err
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / contract.PIXEL_MAX
    pixels = pixels.astype(np.float32)
    top = float(pixels.max())
    return pixels / top if top > 0 else pixels


def read_mask(path: str) -> np.ndarray:
    """A ROI mask as bool [h, w] (anything above half the maximum is lesion)."""
    pixels = read_image(path)
    return pixels > 0.5 * max(float(pixels.max()), 1e-6)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How `resize_keep_aspect` maps a (height, width) image into the target."""

    scale: float
    resized: tuple[int, int]  # (height, width) before padding
    pad_top: int
    pad_left: int
    target: tuple[int, int]

    @property
    def pad_bottom(self) -> int:
        return self.target[0] - self.resized[0] - self.pad_top

    @property
    def pad_right(self) -> int:
        return self.target[1] - self.resized[1] - self.pad_left


def fit_geometry(size: Sequence[int], target: Sequence[int] = contract.CBIS_IMAGE_SIZE) -> Geometry:
    """The largest aspect-preserving scale that fits ``size`` into ``target`` and the
    symmetric padding around it (the odd pixel at the bottom/right)."""
    height, width = int(size[0]), int(size[1])
    scale = min(target[0] / height, target[1] / width)
    new_h = min(target[0], max(1, int(round(height * scale))))
    new_w = min(target[1], max(1, int(round(width * scale))))
    return Geometry(
        scale,
        (new_h, new_w),
        (target[0] - new_h) // 2,
        (target[1] - new_w) // 2,
        (int(target[0]), int(target[1])),
    )


def resize_keep_aspect(
    image: tf.Tensor, target: Sequence[int] = contract.CBIS_IMAGE_SIZE, method: str = "area"
) -> tf.Tensor:
    """Fits an image into ``target`` keeping its aspect ratio; pads symmetrically with 0.

    The same TF ops run eagerly on NumPy arrays (training data, masks) and inside the
    exported model's signature (serving), so the two cannot differ.

    Args:
        image: [h, w] or [h, w, c], any real dtype (a NumPy array or a tensor).
        target: (height, width), (1152, 896) in the study.
        method: "area" (averaging: downscaling without aliasing; the default for
            images) or "nearest" (masks: stay binary).

    Returns:
        float32 tensor [target_h, target_w] or [target_h, target_w, c].
    """
    image = tf.convert_to_tensor(image)
    squeeze = image.shape.rank == 2
    if squeeze:
        image = image[..., tf.newaxis]
    image = tf.cast(image, tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    goal = tf.constant([float(target[0]), float(target[1])], tf.float64)
    scale = tf.reduce_min(goal / shape)
    resized_hw = tf.cast(tf.clip_by_value(tf.round(shape * scale), 1, goal), tf.int32)
    resized = tf.image.resize(image, resized_hw, method=method)
    pad = tf.constant([int(target[0]), int(target[1])], tf.int32) - resized_hw
    before = pad // 2
    paddings = tf.stack([[before[0], pad[0] - before[0]], [before[1], pad[1] - before[1]], [0, 0]])
    out = tf.pad(resized, paddings)
    out = tf.ensure_shape(out, [int(target[0]), int(target[1]), None])
    return out[..., 0] if squeeze else out


def resize_mask(mask: np.ndarray, target: Sequence[int]) -> np.ndarray:
    """A bool mask through the image's geometry (nearest neighbour): bool [target]."""
    return resize_keep_aspect(np.asarray(mask, np.float32), target, method="nearest").numpy() > 0.5


def save_png(path: str, image: np.ndarray) -> None:
    """Writes float [0, 1] grey (or uint8) pixels as an 8-bit PNG."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels * contract.PIXEL_MAX), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
