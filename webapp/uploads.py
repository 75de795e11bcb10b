"""Checks an uploaded file by its content before anything is sent to the model.

``webapp.service.collect_uploads`` calls :func:`check_upload` for every file of a form or
API request. A file is accepted only when its first bytes are a PNG/JPEG/GIF/BMP
signature, Pillow reads its header, its declared pixel count is under the limit (checked
before any pixel is decoded, so a 20000x20000 "decompression bomb" costs nothing) and
Pillow decodes it completely (a truncated file fails here, not in the model). The file
name is only ever shown, escaped; it is never used as a path.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import unicodedata
from typing import Optional

from PIL import Image, UnidentifiedImageError

from breastdx_core import image_files  # pure Python: magic bytes, no TensorFlow
from breastdx_core import errors

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 120
HTTP_BAD_REQUEST = 400
HTTP_TOO_LARGE = 413


class UploadError(errors.BreastdxError):
    """A refused upload; ``status`` is 400 or 413 and ``message`` says why."""

    def __init__(self, message: str, status: int = HTTP_BAD_REQUEST):
        super().__init__(message)
        self.message = message
        self.status = status
        self.http_status = status


@dataclasses.dataclass(frozen=True)
class Upload:
    """An accepted image: its display name, unchanged bytes, format and size."""

    name: str
    data: bytes
    image_format: str
    width: int
    height: int


def sniff_format(data: bytes) -> Optional[str]:
    """The image format named by the first bytes ("PNG"...), or None unless it is one
    the model's Transform graph decodes (the same check ImageIngest makes)."""
    fmt = image_files.sniff(data[:16])
    return fmt.upper() if fmt in image_files.DECODABLE else None


def display_name(raw: Optional[str], index: int) -> str:
    """The name to show for an upload: the client's name when it is a plain file name.

    Raises:
        UploadError: for a name with a path in it (``../``, ``/``, ``\\``) or control
            characters; browsers send plain names, so such a name is a crafted request.
    """
    if not raw:
        return f"image-{index + 1}"
    if any(sep in raw for sep in ("/", "\\")) or raw.strip() in (".", "..") or \
            any(unicodedata.category(ch).startswith("C") for ch in raw):
        raise UploadError(f"file name {raw[:MAX_NAME_CHARS]!r} is not a plain file name")
    return raw.strip()[:MAX_NAME_CHARS]


def check_upload(raw_name: Optional[str], data: bytes, index: int, max_bytes: int, max_pixels: int) -> Upload:
    """Accepts or refuses one uploaded file.

    Args:
        raw_name: the name the client sent (may be None).
        data: the file's bytes.
        index: its position in the request, for unnamed files.
        max_bytes: the largest file accepted.
        max_pixels: the largest width x height accepted.

    Returns:
        The :class:`Upload`.

    Raises:
        UploadError: saying what was expected and what came.
    """
    name = display_name(raw_name, index)
    if not data:
        raise UploadError(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise UploadError(f"{name}: {len(data)} bytes; at most {max_bytes} are accepted", HTTP_TOO_LARGE)
    sniffed = sniff_format(data)
    if sniffed is None:
        raise UploadError(f"{name}: not an image; expected PNG, JPEG, GIF or BMP content")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(f"{name}: {width}x{height} pixels; at most {max_pixels} pixels are accepted",
                                  HTTP_TOO_LARGE)
            if image.format != sniffed:
                raise UploadError(f"{name}: content starts like {sniffed} but reads as {image.format}")
            image.load()
    except UploadError:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard fires in open() past 2x its limit
        raise UploadError(f"{name}: declares more than {max_pixels} pixels (a decompression bomb?)",
                          HTTP_TOO_LARGE) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UploadError(f"{name}: not a readable {sniffed} image ({type(err).__name__})") from None
    return Upload(name, data, sniffed, width, height)
