"""The ingest's tf.Example records, encoded by hand on the wire (and, for reference, the
same record built as a protobuf).

Called by components/image_ingest/executor.py (`serialize_example`, once per image) and by
bench/ingest.py (both, to time them). Not a patch of any framework: a fast path that must
stay byte-for-byte protobuf's own serialization. tests/test_ingest_labels.py holds
`serialize_example` equal to `make_example(...).SerializeToString(deterministic=True)` on
generated records, so a difference fails there, not in a reader downstream. Index entry:
docs/compat.md.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from breastdx_core import contract

if TYPE_CHECKING:
    import tensorflow as tf

    from breastdx_core import image_files
    from components.image_ingest import layouts


def make_example(
    data: bytes,
    info: image_files.ImageInfo,
    candidate: layouts.Candidate,
    mask: bytes | None = None,
) -> tf.train.Example:
    """The record of one image: its original bytes, label, patient and header facts
    (and, in the segmentation variant, its merged mask as ``mask_raw``).

    Filled field by field: about half the cost of nested constructors (bench/ingest.py).
    """
    import tensorflow as tf

    example = tf.train.Example()
    feature = example.features.feature
    feature[contract.IMAGE_KEY].bytes_list.value.append(data)
    feature[contract.LABEL_KEY].int64_list.value.append(candidate.label)
    feature[contract.PATIENT_KEY].bytes_list.value.append(candidate.patient_id.encode("utf-8"))
    feature[contract.HEIGHT_KEY].int64_list.value.append(info.height)
    feature[contract.WIDTH_KEY].int64_list.value.append(info.width)
    feature[contract.DEPTH_KEY].int64_list.value.append(info.depth)
    feature[contract.SOURCE_PATH_KEY].bytes_list.value.append(candidate.rel.encode("utf-8"))
    feature[contract.CONTENT_HASH_KEY].bytes_list.value.append(
        (candidate.sha256 or hashlib.sha256(data).hexdigest()).encode("ascii")
    )
    if mask is not None:
        feature[contract.MASK_KEY].bytes_list.value.append(mask)
    return example


# --- the record, encoded directly ------------------------------------------------------
# tf.train.Example's wire format (tensorflow/core/example/{example,feature}.proto):
# Example{features = 1: Features{feature = 1: map<string, Feature>}}, a map entry
# {key = 1, value = 2}, Feature{bytes_list = 1: BytesList{value = 1}, int64_list = 3:
# Int64List{value = 1, packed}}. Written by hand, a record costs a few microseconds instead
# of ~20 for filling and serializing the protobuf (bench/ingest.py); `serialize_example`
# gives exactly the bytes of `make_example(...).SerializeToString(deterministic=True)`
# (tests/test_ingest_labels.py), so any tf.Example reader parses it as before.
_LEN = b"\x0a"  # field 1, length-delimited
_VARINTS = [bytes((n,)) for n in range(0x80)]
_INT64_MASK = (1 << 64) - 1


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _VARINTS[n] if n >= 0 else _varint(n & _INT64_MASK)
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    """Feature{bytes_list: BytesList{value: [value]}}."""
    inner = _LEN + _varint(len(value))
    return b"".join((_LEN, _varint(len(inner) + len(value)), inner, value))


_INT64_FEATURES: dict[int, bytes] = {}


def _int64_feature(value: int) -> bytes:
    """Feature{int64_list: Int64List{value: [value]}} (small values kept: labels, sizes)."""
    feature = _INT64_FEATURES.get(value)
    if feature is None:
        feature = _delimited(b"\x1a", _delimited(_LEN, _varint(value)))
        if 0 <= value < 0x10000:
            _INT64_FEATURES[value] = feature
    return feature


_ENTRY_KEYS: dict[str, bytes] = {}


def _entry(key: str, feature: bytes) -> bytes:
    """One entry of Features' map: {key: 1, value: 2}."""
    prefix = _ENTRY_KEYS.get(key)
    if prefix is None:
        prefix = _ENTRY_KEYS[key] = _delimited(_LEN, key.encode("utf-8")) + b"\x12"
    length = _varint(len(feature))
    return b"".join(
        (_LEN, _varint(len(prefix) + len(length) + len(feature)), prefix, length, feature)
    )


_RECORD_KEYS = tuple(
    sorted(
        (
            contract.IMAGE_KEY,
            contract.LABEL_KEY,
            contract.PATIENT_KEY,
            contract.HEIGHT_KEY,
            contract.WIDTH_KEY,
            contract.DEPTH_KEY,
            contract.SOURCE_PATH_KEY,
            contract.CONTENT_HASH_KEY,
        )
    )
)


_SMALL_ENTRIES: dict[tuple[str, Any], bytes] = {}  # label, sizes, patient: few distinct values
_SMALL_ENTRIES_MAX = 100_000


def _small_entry(key: str, value: Any, feature: Any) -> bytes:
    entry = _SMALL_ENTRIES.get((key, value))
    if entry is None:
        entry = _entry(key, feature(value))
        if len(_SMALL_ENTRIES) < _SMALL_ENTRIES_MAX:
            _SMALL_ENTRIES[(key, value)] = entry
    return entry


def _utf8_feature(value: str) -> bytes:
    return _bytes_feature(value.encode("utf-8"))


def serialize_example(
    data: bytes,
    info: image_files.ImageInfo,
    candidate: layouts.Candidate,
    mask: bytes | None = None,
    sha256: str | None = None,
) -> bytes:
    """`make_example`'s record, serialized (deterministically: map keys sorted); ``sha256``:
    the bytes' hex digest where the caller has it."""
    sha256 = sha256 or candidate.sha256 or hashlib.sha256(data).hexdigest()
    entries = {
        contract.IMAGE_KEY: _entry(contract.IMAGE_KEY, _bytes_feature(data)),
        contract.LABEL_KEY: _small_entry(contract.LABEL_KEY, candidate.label, _int64_feature),
        contract.PATIENT_KEY: _small_entry(
            contract.PATIENT_KEY, candidate.patient_id, _utf8_feature
        ),
        contract.HEIGHT_KEY: _small_entry(contract.HEIGHT_KEY, info.height, _int64_feature),
        contract.WIDTH_KEY: _small_entry(contract.WIDTH_KEY, info.width, _int64_feature),
        contract.DEPTH_KEY: _small_entry(contract.DEPTH_KEY, info.depth, _int64_feature),
        contract.SOURCE_PATH_KEY: _entry(contract.SOURCE_PATH_KEY, _utf8_feature(candidate.rel)),
        contract.CONTENT_HASH_KEY: _entry(
            contract.CONTENT_HASH_KEY, _bytes_feature(sha256.encode("ascii"))
        ),
    }
    keys = _RECORD_KEYS
    if mask is not None:
        entries[contract.MASK_KEY] = _entry(contract.MASK_KEY, _bytes_feature(mask))
        keys = sorted(entries)
    body = b"".join([entries[key] for key in keys])
    return _LEN + _varint(len(body)) + body
