"""Reads what ImageIngest needs from an encoded image without decoding it.

ImageIngest's executor calls `inspect()` once per file: it sniffs the format from the
magic bytes, reads height/width/depth from the header and checks the file is whole.
For PNG (the IDC and BUSI formats) "whole" means a chunk walk with every CRC checked
and an IEND at the end: a truncated or bit-flipped file is caught at a small fraction
of the cost of decoding it. JPEG gets a marker walk (SOI, a frame header, EOI). The
"decode" mode decodes every file with Pillow instead, for formats or doubts the
structural check does not cover.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib

from breastdx_core import errors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"

# The formats tf.io.decode_image (the Transform graph) can decode.
DECODABLE = ("png", "jpeg", "gif", "bmp")

_PNG_DEPTH = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # IHDR colour type -> channels in the file
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageError(errors.UserError):
    """A file that cannot become a record. ``reason`` is the ingest report's key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    format: str
    height: int
    width: int
    depth: int


def sniff(head: bytes) -> str | None:
    """The image format from the first bytes, or None if it is no image format we know."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SOI):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _png_info(data: bytes) -> ImageInfo:
    pos = len(PNG_SIGNATURE)
    size = len(data)
    info = None
    while True:
        if pos + 8 > size:
            raise ImageError("corrupt", f"PNG truncated at byte {pos} of {size} (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > size:
            raise ImageError(
                "corrupt", f"PNG truncated: chunk {ctype!r} needs {end} bytes, file has {size}"
            )
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise ImageError("corrupt", f"PNG chunk {ctype!r} at byte {pos} fails its CRC")
        if info is None:
            if ctype != b"IHDR" or length != 13:
                raise ImageError("corrupt", "PNG does not start with an IHDR chunk")
            width, height, _bit_depth, colour = struct.unpack(">IIBB", data[pos + 8 : pos + 18])
            if colour not in _PNG_DEPTH or width == 0 or height == 0:
                raise ImageError(
                    "corrupt", f"PNG header invalid (colour type {colour}, {width}x{height})"
                )
            info = ImageInfo("png", height, width, _PNG_DEPTH[colour])
        if ctype == b"IEND":
            return info
        pos = end


def _jpeg_info(data: bytes) -> ImageInfo:
    pos = 2
    size = len(data)
    info = None
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            raise ImageError("corrupt", f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        seg_len = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _JPEG_SOF:
            if pos + 10 > size:
                raise ImageError("corrupt", "JPEG frame header truncated")
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            info = ImageInfo("jpeg", height, width, data[pos + 9])
        if marker == 0xDA:  # start of scan: entropy-coded data runs to EOI
            if info is None:
                raise ImageError("corrupt", "JPEG scan before any frame header")
            tail = data.rstrip(b"\x00")
            if not tail.endswith(b"\xff\xd9"):
                raise ImageError("corrupt", "JPEG truncated (no end-of-image marker)")
            return info
        pos += 2 + seg_len
    if info is None:
        raise ImageError("corrupt", "JPEG has no frame header")
    return info


def _decode_info(data: bytes, fmt: str) -> ImageInfo:
    from PIL import Image  # only the decode mode and the rarer formats need Pillow

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            depth = len(image.getbands())
    except Exception as exc:  # Pillow raises many types for a broken file
        raise ImageError("corrupt", f"{fmt.upper()} does not decode: {exc}") from None
    return ImageInfo(fmt, height, width, depth)


def inspect(data: bytes, validation: str = "structure") -> ImageInfo:
    """Format, size and channels of an encoded image; checks that it is whole.

    Args:
        data: the file's bytes.
        validation: "structure" (header and chunk/marker walk, CRCs for PNG) or
            "decode" (a full decode with Pillow).

    Raises:
        ImageError: with reason "empty", "not_an_image", "unsupported_format" or "corrupt".
    """
    if not data:
        raise ImageError("empty", "zero-byte file")
    fmt = sniff(data[:16])
    if fmt is None:
        raise ImageError("not_an_image", f"unknown content (first bytes {data[:8]!r})")
    if fmt not in DECODABLE:
        raise ImageError(
            "unsupported_format",
            f"{fmt.upper()} cannot be decoded by the Transform graph "
            f"(supported: {', '.join(DECODABLE)}); convert it to PNG",
        )
    if validation == "decode" or fmt in ("gif", "bmp"):
        return _decode_info(data, fmt)
    if fmt == "png":
        return _png_info(data)
    return _jpeg_info(data)
