"""Checks an uploaded file by its content before anything is sent to the model.

``webapp.service.collect_uploads`` calls :func:`check_upload` for every file of a form or
API request (``breastdx predict`` too). A file is accepted only when its first bytes are a
PNG/JPEG/GIF/BMP/TIFF/WebP signature, Pillow reads its header, its declared pixel count is
under the limit (checked before any pixel is decoded, so a 20000x20000 image that would
fill the memory costs nothing) and Pillow decodes it completely (a truncated file fails
here, not in the model). The model's graph decodes PNG, JPEG, GIF and BMP only
(``tf.io.decode_image``), so a TIFF or WebP is re-encoded here as a PNG: losslessly, the
same pixels at the same size, never resized or normalised. The file name is only ever
shown, escaped; it is never used as a path. Messages are written for a person: the real
size of the file and the limit, in the units people use.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import unicodedata

from PIL import Image, UnidentifiedImageError

from breastdx_core import (
    errors,
    image_files,  # pure Python: magic bytes, no TensorFlow
)

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 120
HTTP_BAD_REQUEST = 400
HTTP_TOO_LARGE = 413
# Formats Pillow reads that the model's graph does not: re-encoded as PNG (lossless).
CONVERTED_FORMATS = ("TIFF", "WEBP")
ACCEPTED_TEXT = "PNG, JPEG, GIF, BMP, TIFF or WebP"
# Pillow modes a PNG stores unchanged; others (CMYK, YCbCr, float) go to RGB(A) first.
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")
PNG_MODE_FOR = {
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
    "I": "I;16",
    "F": "L",
    "RGBa": "RGBA",
    "La": "LA",
    "PA": "RGBA",
}
PILLOW_BOMB_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # Pillow refuses to open images above this


class UploadError(errors.BreastdxError):
    """A refused upload; ``status`` is 400 or 413 and ``message`` says why."""

    def __init__(self, message: str, status: int = HTTP_BAD_REQUEST):
        super().__init__(message)
        self.message = message
        self.status = status
        self.http_status = status


@dataclasses.dataclass(frozen=True)
class Upload:
    """An accepted image: its display name, the bytes sent to the model, their format and size.

    ``source_format`` is the format the file came in ("TIFF"); it differs from
    ``image_format`` when the file was re-encoded losslessly as PNG for the model."""

    name: str
    data: bytes
    image_format: str
    width: int
    height: int
    source_format: str | None = None


def human_bytes(count: int) -> str:
    """``9,734,128`` bytes as "9.3 MiB (9,734,128 bytes)"; small counts as bytes only."""
    if count < 1024:
        return f"{count:,} bytes"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            value = count / size
            text = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            return f"{text} {unit} ({count:,} bytes)"
    return f"{count:,} bytes"


def limit_bytes(count: int) -> str:
    """A limit such as 8,388,608 as "8 MiB"."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return human_bytes(count)


def human_pixels(count: int) -> str:
    """16,777,216 pixels as "16.8 megapixels (16,777,216 pixels)"."""
    return f"{count / 1e6:.1f} megapixels ({count:,} pixels)"


def too_large(name: str, size: int, max_bytes: int) -> UploadError:
    """The refusal of a file of ``size`` bytes (its real size) over ``max_bytes``."""
    return UploadError(
        f"{name}: {human_bytes(size)}; files of at most {limit_bytes(max_bytes)} are accepted",
        HTTP_TOO_LARGE,
    )


def sniff_format(data: bytes, convert: bool = False) -> str | None:
    """The image format named by the first bytes ("PNG"...), or None unless it is one the
    model's Transform graph decodes (the same check ImageIngest makes) or, with
    ``convert``, one re-encoded here (TIFF, WebP)."""
    fmt = image_files.sniff(data[:16])
    if fmt in image_files.DECODABLE:
        return fmt.upper()
    if convert and fmt == "tiff":
        return "TIFF"
    if convert and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def display_name(raw: str | None, index: int) -> str:
    """The name to show for an upload: the client's name when it is a plain file name.

    Raises:
        UploadError: for a name with a path in it (``../``, ``/``, ``\\``) or control
            characters; browsers send plain names, so such a name is a crafted request.
    """
    if not raw:
        return f"image-{index + 1}"
    if (
        any(sep in raw for sep in ("/", "\\"))
        or raw.strip() in (".", "..")
        or any(unicodedata.category(ch).startswith("C") for ch in raw)
    ):
        raise UploadError(f"the file name {raw[:MAX_NAME_CHARS]!r} is not a plain file name")
    return raw.strip()[:MAX_NAME_CHARS]


def as_png(image: Image.Image) -> bytes:
    """The decoded image as PNG bytes: the same pixels, size and channels (lossless)."""
    if image.mode not in PNG_MODES:
        image = image.convert(
            PNG_MODE_FOR.get(image.mode, "RGBA" if "A" in image.getbands() else "RGB")
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def check_upload(
    raw_name: str | None,
    data: bytes,
    index: int,
    max_bytes: int,
    max_pixels: int,
    size: int | None = None,
    convert: bool = False,
) -> Upload:
    """Accepts or refuses one uploaded file.

    Args:
        raw_name: the name the client sent (may be None).
        data: the file's bytes (possibly only the first ``max_bytes + 1``).
        index: its position in the request, for unnamed files.
        max_bytes: the largest file accepted.
        max_pixels: the largest width x height accepted.
        size: the file's real size where ``data`` was cut short (for the message).
        convert: accept TIFF and WebP, re-encoded losslessly as PNG (the web app's pages
            and API); without it only what the model's graph decodes is accepted.

    Returns:
        The :class:`Upload` (a TIFF or WebP re-encoded as PNG).

    Raises:
        UploadError: saying what was expected and what came.
    """
    name = display_name(raw_name, index)
    if not data:
        raise UploadError(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise too_large(name, max(size or 0, len(data)), max_bytes)
    sniffed = sniff_format(data, convert)
    if sniffed is None:
        expected = ACCEPTED_TEXT if convert else "PNG, JPEG, GIF or BMP"
        raise UploadError(f"{name}: not an image; expected {expected} content")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(
                    f"{name}: {width} x {height} = {human_pixels(width * height)}; images of at "
                    f"most {human_pixels(max_pixels)} are accepted",
                    HTTP_TOO_LARGE,
                )
            if image.format != sniffed:
                raise UploadError(
                    f"{name}: starts like a {sniffed} file but reads as {image.format}"
                )
            image.load()
            converted = as_png(image) if sniffed in CONVERTED_FORMATS else None
    except UploadError:
        raise
    except (
        Image.DecompressionBombError
    ) as err:  # Pillow's own guard fires in open() past 2x its limit
        declared = re.search(
            r"\((\d+) pixels\)", str(err)
        )  # Pillow's message names the declared size
        size_text = (
            f"declares {human_pixels(int(declared[1]))}"
            if declared
            else f"declares more than {human_pixels(PILLOW_BOMB_PIXELS)}"
        )
        raise UploadError(
            f"{name}: {size_text}; images of at most {human_pixels(max_pixels)} are accepted",
            HTTP_TOO_LARGE,
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        log.info("refused %s: %s", name, err)
        raise UploadError(
            f"{name}: not a readable {sniffed} image (the file is damaged or cut short)"
        ) from None
    if converted is not None:
        return Upload(name, converted, "PNG", width, height, source_format=sniffed)
    return Upload(name, data, sniffed, width, height, source_format=sniffed)
