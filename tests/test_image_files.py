import io
import struct

import numpy as np
import pytest
from PIL import Image

from breastdx_core import image_files


def _encode(pixels, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


RGB = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("validation", ["structure", "decode"])
def test_png_header(validation):
    info = image_files.inspect(_encode(RGB), validation)
    assert (info.format, info.height, info.width, info.depth) == ("png", 30, 40, 3)
    grey = image_files.inspect(_encode(RGB[..., 0]), validation)
    assert grey.depth == 1


def test_jpeg_header():
    info = image_files.inspect(_encode(RGB, "JPEG"))
    assert (info.format, info.height, info.width, info.depth) == ("jpeg", 30, 40, 3)


@pytest.mark.parametrize("validation", ["structure", "decode"])
def test_truncated_png_is_corrupt(validation):
    data = _encode(RGB)
    with pytest.raises(image_files.ImageError) as err:
        image_files.inspect(data[: len(data) // 2], validation)
    assert err.value.reason == "corrupt"


def test_bit_flip_fails_the_crc():
    data = bytearray(_encode(RGB))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    with pytest.raises(image_files.ImageError, match="CRC"):
        image_files.inspect(bytes(data))


def test_truncated_jpeg_is_corrupt():
    data = _encode(RGB, "JPEG")
    with pytest.raises(image_files.ImageError) as err:
        image_files.inspect(data[:-200])
    assert err.value.reason == "corrupt"


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty"),
        (b"hello, not an image\n", "not_an_image"),
        (b"II*\x00" + b"\x00" * 20, "unsupported_format"),
    ],
)
def test_not_images(data, reason):
    with pytest.raises(image_files.ImageError) as err:
        image_files.inspect(data)
    assert err.value.reason == reason


def test_png_with_bad_ihdr():
    data = image_files.PNG_SIGNATURE + struct.pack(">I4s", 4, b"IEND")
    with pytest.raises(image_files.ImageError):
        image_files.inspect(data)
