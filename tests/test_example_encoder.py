"""components/image_ingest/example_encoder.py: the records the ingest encodes by hand are
byte for byte protobuf's deterministic serialization of the same tf.Example, so every
tf.Example reader parses them as before (docs/compat.md).
"""

import pytest
import tensorflow as tf

from breastdx_core import contract, image_files
from components.image_ingest import example_encoder, layouts


@pytest.mark.parametrize(
    "data,mask",
    [
        (b"\x89PNG" + b"x" * 20000, None),
        (b"", b""),
        (b"\x00" * 5, b"m" * 200),
        (b"y" * 300000, b"z" * 17000),
    ],
)
@pytest.mark.parametrize(
    "patient,rel,label,sha",
    [
        ("10253", "10253/0/10253_idx5_x1_y1_class0.png", 0, "ab" * 32),
        ("ü" * 70, "x/" * 100 + "a.png", 1, ""),
        ("p", "a.png", -1, "cd" * 32),  # a negative int64: a ten-byte varint
    ],
)
def test_serialize_example_is_the_protobufs_serialization(data, mask, patient, rel, label, sha):
    candidate = layouts.Candidate("/root/" + rel, rel, label, patient, (), sha)
    for info in (
        image_files.ImageInfo("png", 50, 50, 3),
        image_files.ImageInfo("jpeg", 70000, 2**40, 1),
    ):
        encoded = example_encoder.serialize_example(data, info, candidate, mask)
        assert encoded == example_encoder.make_example(
            data, info, candidate, mask
        ).SerializeToString(deterministic=True)
        parsed = tf.train.Example.FromString(encoded).features.feature
        assert parsed[contract.IMAGE_KEY].bytes_list.value == [data]
        assert parsed[contract.WIDTH_KEY].int64_list.value == [info.width]
