"""Near-duplicate images: a perceptual hash groups near-identical images into one split group.

Exact duplicates are caught by SHA-256 (`layouts.resolve_duplicates`); re-encoded, resized
or slightly cropped copies are not (BUSI holds many, Pawlowska et al. 2023, and publishes
no patient ids, so each image is its own group and a copy could land in train while its
twin is tested). The hash is the DCT perceptual hash (pHash: the greyscale image at
32x32, its 2-D DCT-II, the top-left 8x8 low frequencies less the DC term compared with
their median: 64 bits), the algorithm of the `imagehash` package's ``phash``, computed
with Pillow and SciPy, which the project keeps. Two images whose hashes differ in at most
``max_bits`` bits are near-duplicates; groups are the connected components.

Called by ImageExampleGen's executor (`executor.Do`, before the split assignment, on sets
up to `MAX_IMAGES` images: the pass reads every file once) and by the tests.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import numpy as np

HASH_SIDE = 32  # pixels a side before the DCT
LOW = 8  # the low-frequency block kept: 64 bits
MAX_IMAGES = (
    20000  # larger sets skip the pass (one decode per file before the split); the report says so
)


def phash(data: bytes) -> int:
    """The 64-bit perceptual hash of an encoded image.

    Raises:
        OSError, ValueError: the bytes are not an image Pillow reads.
    """
    from PIL import Image
    from scipy.fft import dct

    with Image.open(io.BytesIO(data)) as image:
        grey = np.asarray(
            image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.LANCZOS), dtype=np.float64
        )
    freq = dct(dct(grey, axis=0, norm="ortho"), axis=1, norm="ortho")[:LOW, :LOW]
    bits = (freq > np.median(freq.ravel()[1:])).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def distance(a: int, b: int) -> int:
    """Bits in which two hashes differ (Hamming distance)."""
    return bin(a ^ b).count("1")


def groups(hashes: Sequence[tuple[str, int]], max_bits: int) -> list[list[str]]:
    """Connected components of "hashes within ``max_bits``", only those of two or more,
    each sorted, in the order of their first member; ``hashes`` are (name, hash)."""
    names = [name for name, _ in hashes]
    values = np.array([h for _, h in hashes], dtype=np.uint64)
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(values)):
        if i + 1 == len(values):
            break
        # popcount of the XOR with every later hash at once
        xor = np.bitwise_xor(values[i + 1 :], values[i])
        bits = np.unpackbits(xor.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        for j in np.flatnonzero(bits <= max_bits) + i + 1:
            a, b = root(i), root(int(j))
            if a != b:
                parent[b] = a
    members: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        members.setdefault(root(i), []).append(name)
    found = [sorted(m) for m in members.values() if len(m) > 1]
    return sorted(found, key=lambda m: names.index(m[0]) if m[0] in names else 0)


def find(files: Iterable[tuple[str, bytes]], max_bits: int) -> tuple[list[list[str]], list[str]]:
    """Near-duplicate groups of ``files`` ((name, bytes)); and the names that could not be
    hashed (left to the ingest's own checks)."""
    hashes, unreadable = [], []
    for name, data in files:
        try:
            hashes.append((name, phash(data)))
        except (OSError, ValueError, SyntaxError):
            unreadable.append(name)
    return groups(hashes, max_bits), unreadable


def merge_patients(
    assignment: dict[str, int], patient_of: dict[str, str], found: Sequence[Sequence[str]]
) -> tuple[dict[str, int], list[dict[str, object]]]:
    """Puts every near-duplicate group in one split. Splits are by patient, so patients
    linked by a group (directly or through other groups) move together, to the split of
    the first linked patient in sorted order. Returns the new assignment and, per group,
    what it held and where it went (the ingest report lists them)."""
    assignment = dict(assignment)
    parent: dict[str, str] = {}

    def root(p: str) -> str:
        parent.setdefault(p, p)
        while parent[p] != p:
            p = parent[p]
        return p

    for group in found:
        patients = sorted({patient_of[name] for name in group if name in patient_of})
        for other in patients[1:]:
            a, b = root(patients[0]), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    before = dict(assignment)
    for patient in list(parent):
        top = root(patient)
        if top in before:
            assignment[patient] = before[top]
    listed = []
    for group in found:
        patients = sorted({patient_of[name] for name in group if name in patient_of})
        if patients:
            listed.append(
                {
                    "images": list(group),
                    "patients": patients,
                    "splits_before": sorted({before[p] for p in patients if p in before}),
                    "split": assignment.get(patients[0]),
                }
            )
    return assignment, listed
