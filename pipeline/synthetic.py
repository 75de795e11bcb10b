"""Deterministic synthetic data in the real data sets' layouts.

The demo and the tests run on these (no data set can be downloaded here). The CLI's
`breastdx data` verb and `make demo` call `write_idc`; the tests call all three.

* `write_idc`: the Kaggle IDC layout ``<pid>/<0|1>/<pid>_idx5_x<X>_y<Y>_class<C>.png``,
  50x50 RGB H&E-like patches; class 1 (IDC) has denser, larger, darker, irregular
  nuclei; ~28 % positives clustered in a tumour region per patient; and the real set's
  quirks: smaller edge patches, stray non-image files, one truncated PNG, one
  zero-byte file, one file whose name contradicts its label folder.
* `write_busi`: the BUSI layout ``<class>/<class> (N).png`` with ``_mask.png`` beside.
* `write_manifest`: images plus ``manifest.csv`` (``path,label,patient_id``).

Same seed, same bytes: every random draw comes from a generator seeded by
(seed, patient index).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

PATCH = 50
POSITIVE_RATE = 0.28  # the real IDC set: 78,786 positives of 277,524 patches

# H&E colours (RGB): eosin-pink stroma, haematoxylin-purple nuclei.
_BACKGROUND = np.array([236, 196, 220])
_STROMA = np.array([214, 142, 186])
_NUCLEUS_BENIGN = np.array([150, 105, 185])
_NUCLEUS_IDC = np.array([72, 38, 118])


@dataclasses.dataclass
class Summary:
    """What a generator wrote: image counts and the planted quirks (path -> reason)."""

    root: str
    images: int = 0
    by_class: Dict[str, int] = dataclasses.field(default_factory=dict)
    patients: int = 0
    quirks: Dict[str, str] = dataclasses.field(default_factory=dict)
    files: int = 0


def render_patch(rng: np.random.Generator, positive: bool, height: int = PATCH, width: int = PATCH) -> np.ndarray:
    """One H&E-like patch, uint8 [height, width, 3]."""
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = _BACKGROUND + rng.normal(0, 6, 3)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 5)):  # stroma fibres
        y0, y1 = rng.integers(0, height, 2)
        colour = tuple(int(c) for c in _STROMA + rng.normal(0, 8, 3))
        draw.line([(0, int(y0)), (width, int(y1))], fill=colour, width=int(rng.integers(2, 5)))
    if positive:
        count, radius, base, jitter = rng.integers(22, 34), (3.0, 5.5), _NUCLEUS_IDC, 0.45
    else:
        count, radius, base, jitter = rng.integers(5, 10), (1.8, 3.0), _NUCLEUS_BENIGN, 0.1
    for _ in range(count):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(*radius)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radii = r * (1 + rng.uniform(-jitter, jitter, 9))
        points = [(float(cx + rr * np.cos(a)), float(cy + rr * np.sin(a))) for a, rr in zip(angles, radii)]
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 12, 3), 0, 255))
        draw.polygon(points, fill=colour)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 5, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _patient_ids(rng: np.random.Generator, n: int) -> List[str]:
    return [str(x) for x in sorted(rng.choice(np.arange(8860, 16900), size=n, replace=False))]


def write_idc(root: str, patients: int = 40, patches_per_patient: int = 50, seed: int = 7,
              quirks: bool = True) -> Summary:
    """Writes a synthetic IDC tree under ``root``; returns what it wrote.

    Args:
        root: folder to write (created; existing files with the same names are replaced).
        patients: number of patients.
        patches_per_patient: mean patches per patient (varies +-20 %).
        seed: the seed; the same seed writes the same bytes.
        quirks: plant the real set's oddities (see the module docstring).
    """
    summary = Summary(root=root, by_class={"0": 0, "1": 0})
    ids = _patient_ids(np.random.default_rng([seed, 0]), patients)
    for index, pid in enumerate(ids):
        rng = np.random.default_rng([seed, index + 1])
        n = max(4, int(round(patches_per_patient * rng.uniform(0.8, 1.2))))
        cols = int(np.ceil(np.sqrt(n * 1.3)))
        rows = int(np.ceil(n / cols))
        cells = [(r, c) for r in range(rows) for c in range(cols)][:n]
        # The tumour is a region: positives are the cells nearest a random centre.
        rate = float(np.clip(rng.normal(POSITIVE_RATE, 0.1), 0.08, 0.55))
        centre = rng.uniform(0, rows), rng.uniform(0, cols)
        order = sorted(range(n), key=lambda i: (cells[i][0] - centre[0]) ** 2 + (cells[i][1] - centre[1]) ** 2)
        positives = set(order[: int(round(rate * n))])
        for i, (r, c) in enumerate(cells):
            label = 1 if i in positives else 0
            height, width = PATCH, PATCH
            if r == rows - 1 and rng.random() < 0.5:  # the slide's edge cuts the last row
                height = int(rng.integers(20, PATCH))
            if c == cols - 1 and rng.random() < 0.5:
                width = int(rng.integers(20, PATCH))
            name = f"{pid}_idx5_x{1 + c * PATCH}_y{1 + r * PATCH}_class{label}.png"
            _write(os.path.join(root, pid, str(label), name), _png(render_patch(rng, bool(label), height, width)))
            summary.by_class[str(label)] += 1
            summary.images += 1
    summary.patients = len(ids)
    if quirks:
        summary.quirks = _plant_idc_quirks(root, ids, seed)
        spoiled = sum(1 for reason in summary.quirks.values() if reason in ("corrupt", "empty"))
        summary.images -= spoiled  # both quirks spoil an existing class-0 patch
        summary.by_class["0"] -= spoiled
    summary.files = sum(len(names) for _, _, names in os.walk(root))
    return summary


def _plant_idc_quirks(root: str, ids: List[str], seed: int) -> Dict[str, str]:
    """The real set's oddities; returns {relative path: the reason ingest must report}."""
    rng = np.random.default_rng([seed, 10_000])
    ids = [ids[i % len(ids)] for i in range(5)]  # small trees: patients carry several quirks
    quirks: Dict[str, str] = {}
    stray = {".DS_Store": b"\x00\x00\x00\x01Bud1", os.path.join(ids[0], "Thumbs.db"): b"\xd0\xcf\x11\xe0",
             os.path.join(ids[1], "1", "notes.txt"): b"slide scanned twice\n"}
    for rel, data in stray.items():
        _write(os.path.join(root, rel), data)
        quirks[rel.replace(os.sep, "/")] = "outside_layout" if rel.count(os.sep) != 2 else "not_an_image"
    # a truncated PNG (a download cut short), a zero-byte file, a mislabelled file
    victim_dir = os.path.join(root, ids[2], "0")
    victim = sorted(n for n in os.listdir(victim_dir) if n.endswith(".png"))[0]
    with open(os.path.join(victim_dir, victim), "rb") as handle:
        data = handle.read()
    _write(os.path.join(victim_dir, victim), data[: len(data) // 2])
    quirks[f"{ids[2]}/0/{victim}"] = "corrupt"
    empty_dir = os.path.join(root, ids[3], "0")
    empty = sorted(n for n in os.listdir(empty_dir) if n.endswith(".png") and f"{ids[3]}/0/{n}" not in quirks)[-1]
    _write(os.path.join(empty_dir, empty), b"")
    quirks[f"{ids[3]}/0/{empty}"] = "empty"
    wrong = f"{ids[4]}_idx5_x9001_y9001_class1.png"
    _write(os.path.join(root, ids[4], "0", wrong), _png(render_patch(rng, True)))
    quirks[f"{ids[4]}/0/{wrong}"] = "label_conflict"
    return quirks


def render_ultrasound(rng: np.random.Generator, kind: str, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """A speckled grey ultrasound-like image and its lesion mask (uint8 0/255).

    ``kind`` is normal (no lesion), benign (smooth oval) or malignant (irregular, spiky).
    """
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    depth_gain = 0.6 + 0.4 * (1 - yy / height)
    image = 110 * depth_gain * rng.gamma(4.0, 0.25, (height, width))
    mask = np.zeros((height, width), dtype=bool)
    if kind != "normal":
        cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.3, 0.7) * width
        ry, rx = rng.uniform(0.1, 0.2) * height, rng.uniform(0.12, 0.25) * width
        angle = np.arctan2(yy - cy, xx - cx)
        radius = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        edge = 1.0
        if kind == "malignant":
            edge = 1.0 + 0.3 * np.sin(angle * rng.integers(5, 9) + rng.uniform(0, 6)) * rng.uniform(0.6, 1.0)
        mask = radius < edge
        image[mask] *= 0.25 if kind == "malignant" else 0.4
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, (mask * 255).astype(np.uint8)


BUSI_CLASSES = ("normal", "benign", "malignant")


def write_busi(root: str, per_class: int = 10, seed: int = 7, size: Tuple[int, int] = (120, 160)) -> Summary:
    """Writes a BUSI-layout tree: ``<class>/<class> (N).png`` and ``<class> (N)_mask.png``;
    the first malignant image also gets a second mask ``_mask_1.png`` as in the real set."""
    summary = Summary(root=root, by_class={c: 0 for c in BUSI_CLASSES})
    for k, kind in enumerate(BUSI_CLASSES):
        rng = np.random.default_rng([seed, 20_000 + k])
        for n in range(1, per_class + 1):
            image, mask = render_ultrasound(rng, kind, size)
            base = os.path.join(root, kind, f"{kind} ({n})")
            _write(base + ".png", _png(np.stack([image] * 3, -1)))  # BUSI stores grey as RGB
            _write(base + "_mask.png", _png(mask))
            if kind == "malignant" and n == 1:
                _write(base + "_mask_1.png", _png(mask))
            summary.by_class[kind] += 1
            summary.images += 1
    summary.patients = summary.images
    summary.files = sum(len(names) for _, _, names in os.walk(root))
    return summary


def write_manifest(root: str, patients: int = 3, per_patient: int = 6, seed: int = 7) -> Summary:
    """Writes IDC-like patches under ``root/images`` and ``root/manifest.csv`` listing them
    with ``path,label,patient_id`` (labels by class name), plus one row whose file is missing."""
    summary = Summary(root=root, by_class={"0": 0, "1": 0})
    rows = []
    for p in range(patients):
        rng = np.random.default_rng([seed, 30_000 + p])
        pid = f"P{p:03d}"
        for i in range(per_patient):
            label = i % 3 == 0
            rel = f"images/{pid}_{i:02d}.png"
            _write(os.path.join(root, rel), _png(render_patch(rng, label)))
            rows.append((rel, "IDC-positive" if label else "IDC-negative", pid))
            summary.by_class[str(int(label))] += 1
            summary.images += 1
    rows.append(("images/missing.png", "IDC-negative", "P999"))
    summary.quirks["images/missing.png"] = "missing_file"
    with open(os.path.join(root, "manifest.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient_id"])
        writer.writerows(rows)
    summary.patients = patients
    summary.files = sum(len(names) for _, _, names in os.walk(root))
    return summary
