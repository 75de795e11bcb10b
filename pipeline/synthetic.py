"""Deterministic synthetic data in the real data sets' layouts.

The demo and the tests run on these (no data set can be downloaded here). The CLI's
`breastdx data` verb and `make demo` call `write_idc`; the tests call all three.

* `write_idc`: the Kaggle IDC layout ``<pid>/<0|1>/<pid>_idx5_x<X>_y<Y>_class<C>.png``,
  50x50 RGB H&E-like patches; class 1 (IDC) has denser, larger, darker, irregular
  nuclei; ~28 % positives clustered in a tumour region per patient; and the real set's
  quirks: smaller edge patches, stray non-image files, one truncated PNG, one
  zero-byte file, one file whose name contradicts its label folder.
* `write_busi`: the BUSI layout ``<class>/<class> (N).png`` with ``_mask.png`` beside
  (and ``_mask_1.png`` for images with a second lesion); the real set's class imbalance;
  normal images have no lesion, benign ones a smooth dark oval, malignant ones a darker,
  irregular, taller-than-wide lesion with an acoustic shadow (`breastdx demo --task busi`).
* `write_manifest`: images plus ``manifest.csv`` (``path,label,patient_id``).
* `write_cbis`: a CBIS-DDSM-like release: the four case-description CSVs with the real
  columns, full mammograms (greyscale, breast against the chest wall) with masses and
  calcification clusters, their ROI masks and cropped ROIs (`breastdx demo --variant mammo`).

Same seed, same bytes: every random draw comes from a generator seeded by
(seed, patient index).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import sys

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

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
    by_class: dict[str, int] = dataclasses.field(default_factory=dict)
    patients: int = 0
    quirks: dict[str, str] = dataclasses.field(default_factory=dict)
    files: int = 0


def render_patch(
    rng: np.random.Generator, positive: bool, height: int = PATCH, width: int = PATCH
) -> np.ndarray:
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
        points = [
            (float(cx + rr * np.cos(a)), float(cy + rr * np.sin(a))) for a, rr in zip(angles, radii)
        ]
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


def _patient_ids(rng: np.random.Generator, n: int) -> list[str]:
    return [str(x) for x in sorted(rng.choice(np.arange(8860, 16900), size=n, replace=False))]


def write_idc(
    root: str, patients: int = 40, patches_per_patient: int = 50, seed: int = 7, quirks: bool = True
) -> Summary:
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
    progress = tqdm(
        ids, desc="synthetic IDC patients", unit="patient", disable=not sys.stderr.isatty()
    )
    for index, pid in enumerate(progress):
        rng = np.random.default_rng([seed, index + 1])
        n = max(4, int(round(patches_per_patient * rng.uniform(0.8, 1.2))))
        cols = int(np.ceil(np.sqrt(n * 1.3)))
        rows = int(np.ceil(n / cols))
        cells = [(r, c) for r in range(rows) for c in range(cols)][:n]
        # The tumour is a region: positives are the cells nearest a random centre.
        rate = float(np.clip(rng.normal(POSITIVE_RATE, 0.1), 0.08, 0.55))
        centre = rng.uniform(0, rows), rng.uniform(0, cols)
        order = sorted(
            range(n), key=lambda i: (cells[i][0] - centre[0]) ** 2 + (cells[i][1] - centre[1]) ** 2
        )
        positives = set(order[: int(round(rate * n))])
        for i, (r, c) in enumerate(cells):
            label = 1 if i in positives else 0
            height, width = PATCH, PATCH
            if r == rows - 1 and rng.random() < 0.5:  # the slide's edge cuts the last row
                height = int(rng.integers(20, PATCH))
            if c == cols - 1 and rng.random() < 0.5:
                width = int(rng.integers(20, PATCH))
            name = f"{pid}_idx5_x{1 + c * PATCH}_y{1 + r * PATCH}_class{label}.png"
            _write(
                os.path.join(root, pid, str(label), name),
                _png(render_patch(rng, bool(label), height, width)),
            )
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


def _plant_idc_quirks(root: str, ids: list[str], seed: int) -> dict[str, str]:
    """The real set's oddities; returns {relative path: the reason ingest must report}."""
    rng = np.random.default_rng([seed, 10_000])
    ids = [ids[i % len(ids)] for i in range(5)]  # small trees: patients carry several quirks
    quirks: dict[str, str] = {}
    stray = {
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        os.path.join(ids[0], "Thumbs.db"): b"\xd0\xcf\x11\xe0",
        os.path.join(ids[1], "1", "notes.txt"): b"slide scanned twice\n",
    }
    for rel, data in stray.items():
        _write(os.path.join(root, rel), data)
        quirks[rel.replace(os.sep, "/")] = (
            "outside_layout" if rel.count(os.sep) != 2 else "not_an_image"
        )
    # a truncated PNG (a download cut short), a zero-byte file, a mislabelled file
    victim_dir = os.path.join(root, ids[2], "0")
    victim = sorted(n for n in os.listdir(victim_dir) if n.endswith(".png"))[0]
    with open(os.path.join(victim_dir, victim), "rb") as handle:
        data = handle.read()
    _write(os.path.join(victim_dir, victim), data[: len(data) // 2])
    quirks[f"{ids[2]}/0/{victim}"] = "corrupt"
    empty_dir = os.path.join(root, ids[3], "0")
    empty = sorted(
        n for n in os.listdir(empty_dir) if n.endswith(".png") and f"{ids[3]}/0/{n}" not in quirks
    )[-1]
    _write(os.path.join(empty_dir, empty), b"")
    quirks[f"{ids[3]}/0/{empty}"] = "empty"
    wrong = f"{ids[4]}_idx5_x9001_y9001_class1.png"
    _write(os.path.join(root, ids[4], "0", wrong), _png(render_patch(rng, True)))
    quirks[f"{ids[4]}/0/{wrong}"] = "label_conflict"
    return quirks


def _lesion(
    rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray, scale: float = 1.0
) -> tuple[np.ndarray, float, float, float, float]:
    """One lesion's mask and geometry (centre y, x and radii y, x) on the grid yy, xx."""
    height, width = yy.shape
    cy, cx = rng.uniform(0.35, 0.6) * height, rng.uniform(0.3, 0.7) * width
    if kind == "malignant":  # taller than wide, irregular: the BI-RADS signs of malignancy
        ry, rx = rng.uniform(0.2, 0.28) * height * scale, rng.uniform(0.14, 0.2) * width * scale
    else:  # wider than tall ("parallel"), smooth
        ry, rx = rng.uniform(0.13, 0.18) * height * scale, rng.uniform(0.2, 0.27) * width * scale
    angle = np.arctan2(yy - cy, xx - cx)
    radius = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    edge = 1.0
    if kind == "malignant":
        edge = 1.0 + 0.3 * np.sin(angle * rng.integers(5, 9) + rng.uniform(0, 6)) * rng.uniform(
            0.6, 1.0
        )
    return radius < edge, cy, cx, ry, rx


def render_ultrasound(
    rng: np.random.Generator, kind: str, size: tuple[int, int], lesions: int = 1
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A speckled grey ultrasound-like image and one mask per lesion (uint8 0/255).

    ``kind`` is normal (no lesion, no mask), benign (smooth, wider-than-tall, dark oval
    with posterior acoustic enhancement) or malignant (irregular, spiky, taller than
    wide, darker, with posterior acoustic shadowing). All images share the tissue
    layers (skin line, bright fibroglandular bands), so the lesion is what tells the
    classes apart, as in the real set.
    """
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    depth_gain = 0.6 + 0.4 * (1 - yy / height)
    tissue = np.ones((height, width), dtype=np.float32)
    tissue[: max(2, height // 30)] = 1.8  # skin line
    for _ in range(int(rng.integers(2, 4))):  # fibroglandular bands
        centre, thickness = rng.uniform(0.15, 0.9) * height, rng.uniform(0.02, 0.05) * height
        tilt = rng.uniform(-0.1, 0.1)
        tissue += 0.5 * np.exp(-(((yy - centre - tilt * (xx - width / 2)) / thickness) ** 2))
    image = 100 * depth_gain * tissue * rng.gamma(4.0, 0.25, (height, width))
    masks: list[np.ndarray] = []
    if kind != "normal":
        for k in range(lesions):
            mask, cy, cx, ry, rx = _lesion(rng, kind, yy, xx, scale=1.0 if k == 0 else 0.5)
            below = (yy > cy + ry * 0.8) & (np.abs(xx - cx) < rx * 0.8)
            if kind == "malignant":
                image[below & ~mask] *= 0.35  # posterior shadowing
                image[mask] *= 0.15
            else:
                image[below & ~mask] *= 1.15  # posterior enhancement
                image[mask] *= 0.45
            masks.append((mask * 255).astype(np.uint8))
    return np.clip(image, 0, 255).astype(np.uint8), masks


BUSI_CLASSES = ("normal", "benign", "malignant")
# The real set's imbalance (133 normal, 437 benign, 210 malignant), scaled down: the
# default synthetic set (`breastdx demo --task busi`) trains in a couple of minutes.
BUSI_DEMO_COUNTS = {"normal": 30, "benign": 60, "malignant": 40}
BUSI_SIZE = (120, 160)  # (height, width): not square, so the Transform pads


def write_busi(
    root: str,
    per_class: int | None = None,
    seed: int = 7,
    size: tuple[int, int] = BUSI_SIZE,
    counts: dict[str, int] | None = None,
) -> Summary:
    """Writes a BUSI-layout tree: ``<class>/<class> (N).png`` with ``<class> (N)_mask.png``
    beside every image (an all-zero mask for normal images, as in the real set). Every
    fifth lesion image (the first malignant one always) has a second lesion whose
    mask is ``<class> (N)_mask_1.png``; the union of both is the segmentation target.

    Args:
        root: folder to write.
        per_class: images per class; None: ``counts`` (default `BUSI_DEMO_COUNTS`).
        seed: the same seed writes the same bytes.
        size: (height, width) of every image.
        counts: images per class name, when ``per_class`` is None.
    """
    if per_class is not None:
        counts = {c: per_class for c in BUSI_CLASSES}
    counts = dict(BUSI_DEMO_COUNTS if counts is None else counts)
    summary = Summary(root=root, by_class={c: 0 for c in BUSI_CLASSES})
    for k, kind in enumerate(BUSI_CLASSES):
        rng = np.random.default_rng([seed, 20_000 + k])
        for n in range(1, counts.get(kind, 0) + 1):
            two = kind != "normal" and (n % 5 == 1) and (kind == "malignant" or n > 1)
            image, masks = render_ultrasound(rng, kind, size, lesions=2 if two else 1)
            base = os.path.join(root, kind, f"{kind} ({n})")
            _write(base + ".png", _png(np.stack([image] * 3, -1)))  # BUSI stores grey as RGB
            _write(base + "_mask.png", _png(masks[0] if masks else np.zeros(size, np.uint8)))
            for extra, mask in enumerate(masks[1:], start=1):
                _write(base + f"_mask_{extra}.png", _png(mask))
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


# --- CBIS-DDSM (mammography) ---------------------------------------------------------
CBIS_CSV_NAMES = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calcification", "train"): "calc_case_description_train_set.csv",
    ("calcification", "test"): "calc_case_description_test_set.csv",
}
CBIS_MASS_COLUMNS = (
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
)
CBIS_CALC_COLUMNS = (
    "patient_id",
    "breast density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "calc type",
    "calc distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
)
CBIS_IMAGES_DIR = "CBIS-DDSM"
CBIS_SIZE = (384, 300)  # (height, width) of the synthetic mammograms (the real ones: ~5000x3000)


def _uid(rng: np.random.Generator) -> str:
    return "1.3.6.1.4.1.9590.100.1.2." + "".join(str(d) for d in rng.integers(0, 10, 30))


def render_mammogram(
    rng: np.random.Generator, side: str, size: tuple[int, int] = CBIS_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """A grey mammogram-like image, uint8 [h, w], and its breast region (bool [h, w]):
    a half-ellipse breast against the chest-wall edge (left or right) with smooth
    fibroglandular texture, black outside."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    x_from_wall = xx if side == "LEFT" else (width - 1 - xx)
    depth = rng.uniform(0.75, 0.92) * width
    breast = ((x_from_wall / depth) ** 2 + ((yy - height / 2) / (0.47 * height)) ** 2) < 1
    coarse = rng.normal(0, 1, (height // 16 + 2, width // 16 + 2))
    texture = np.asarray(
        Image.fromarray(coarse.astype(np.float32)).resize((width, height), Image.BICUBIC)
    )
    density = 95 + 25 * texture + 35 * (1 - x_from_wall / depth)
    image = np.where(
        breast, density + rng.normal(0, 6, (height, width)), rng.normal(4, 2, (height, width))
    )
    return np.clip(image, 0, 255).astype(np.uint8), breast


def _place(rng: np.random.Generator, breast: np.ndarray, margin: int) -> tuple[float, float]:
    ys, xs = np.nonzero(breast)
    for _ in range(200):
        i = rng.integers(len(ys))
        cy, cx = ys[i], xs[i]
        y0, y1, x0, x1 = cy - margin, cy + margin, cx - margin, cx + margin
        if (
            y0 >= 0
            and x0 >= 0
            and y1 < breast.shape[0]
            and x1 < breast.shape[1]
            and breast[y0:y1, x0:x1].mean() > 0.97
        ):
            return float(cy), float(cx)
    return float(ys.mean()), float(xs.mean())


def render_abnormality(
    rng: np.random.Generator, image: np.ndarray, breast: np.ndarray, kind: str, malignant: bool
) -> np.ndarray:
    """Draws a mass (benign: round, smooth; malignant: spiculated, denser) or a
    calcification cluster (benign: few coarse round specks; malignant: many fine,
    pleomorphic, tightly clustered) into ``image`` in place; returns its ROI mask (bool)."""
    height, width = image.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "mass":
        radius = rng.uniform(14, 22)
        cy, cx = _place(rng, breast, int(radius * 2))
        angle = np.arctan2(yy - cy, xx - cx)
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        edge = radius * (
            1 + (0.35 * np.maximum(0, np.sin(angle * rng.integers(7, 12))) ** 3 if malignant else 0)
        )
        mask = r < edge
        image[mask] = np.clip(image[mask].astype(np.float32) + (95 if malignant else 70), 0, 255)
        return mask
    spread = rng.uniform(12, 16) if malignant else rng.uniform(16, 22)
    cy, cx = _place(rng, breast, int(spread * 2))
    mask = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) < spread
    count, (rmin, rmax) = (
        (rng.integers(14, 22), (0.8, 1.6)) if malignant else (rng.integers(4, 7), (2.0, 3.2))
    )
    for _ in range(count):
        a, d = rng.uniform(0, 2 * np.pi), spread * np.sqrt(rng.uniform(0, 0.8))
        sy, sx, rr = cy + d * np.sin(a), cx + d * np.cos(a), rng.uniform(rmin, rmax)
        speck = ((yy - sy) / rr) ** 2 + (
            (xx - sx) / (rr * rng.uniform(0.6, 1.6) if malignant else rr)
        ) ** 2 < 1
        image[speck] = 245
    return mask


def write_cbis(
    root: str, patients: int = 24, seed: int = 7, size: tuple[int, int] = CBIS_SIZE
) -> Summary:
    """Writes a CBIS-DDSM-like release under ``root``: the four case-description CSVs
    (the real column names) and ``CBIS-DDSM/<series>/<uid>/<uid>/0000NN.png`` folders for
    the full mammograms, the ROI masks and the cropped ROIs.

    The CSVs list ``.dcm`` paths, as the real release does; the files are PNG, as in the
    common converted copies: the reader resolves the extension. Also planted, as in the
    real CSVs: trailing newlines in some ROI paths, and one row whose cropped-image and
    ROI-mask paths are swapped (the reader tells them apart by size).

    Every patient has one or two views (CC, MLO) of one breast with one abnormality
    (a mass or a calcification cluster, benign or malignant); a fifth of the images get
    a second abnormality. 2/3 of the patients are in the train CSVs, the rest in test.
    """
    summary = Summary(root=root, by_class={})
    rows: dict[tuple[str, str], list[dict[str, str]]] = {key: [] for key in CBIS_CSV_NAMES}
    swapped = False
    for p in range(patients):
        rng = np.random.default_rng([seed, 40_000 + p])
        pid = f"P_{(p + 1) * 7:05d}"
        split = "train" if p % 3 else "test"
        side = "LEFT" if rng.random() < 0.5 else "RIGHT"
        kind = ("mass", "calcification")[p % 2]
        malignant = bool((p // 2) % 2)
        views = ("CC", "MLO") if rng.random() < 0.6 else ("CC",)
        for view in views:
            height = int(size[0] * rng.uniform(0.9, 1.1))
            width = int(size[1] * rng.uniform(0.9, 1.1))
            image, breast = render_mammogram(rng, side, (height, width))
            abnormalities = [(kind, malignant)]
            if rng.random() < 0.2:
                abnormalities.append((("calcification", "mass")[p % 2], bool(rng.random() < 0.5)))
            masks = [render_abnormality(rng, image, breast, k, m) for k, m in abnormalities]
            series = (
                f"{'Mass' if kind == 'mass' else 'Calc'}-"
                f"{'Training' if split == 'train' else 'Test'}_{pid}_{side}_{view}"
            )
            full_rel = f"{series}/{_uid(rng)}/{_uid(rng)}/000000"
            _write(os.path.join(root, CBIS_IMAGES_DIR, full_rel + ".png"), _png(image))
            summary.images += 1
            for n, ((k, m), mask) in enumerate(zip(abnormalities, masks), start=1):
                prefix = "Mass" if k == "mass" else "Calc"
                roi_series = (
                    f"{prefix}-{'Training' if split == 'train' else 'Test'}_{pid}_{side}_{view}_{n}"
                )
                folder = f"{roi_series}/{_uid(rng)}/{_uid(rng)}"
                ys, xs = np.nonzero(mask)
                crop = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
                _write(os.path.join(root, CBIS_IMAGES_DIR, folder, "000000.png"), _png(crop))
                _write(
                    os.path.join(root, CBIS_IMAGES_DIR, folder, "000001.png"),
                    _png((mask * 255).astype(np.uint8)),
                )
                crop_rel, roi_rel = f"{folder}/000000.dcm", f"{folder}/000001.dcm"
                if not swapped and p >= 2:  # the real CSVs swap these two columns in some rows
                    crop_rel, roi_rel, swapped = roi_rel, crop_rel, True
                pathology = (
                    "MALIGNANT" if m else ("BENIGN_WITHOUT_CALLBACK" if n == 2 else "BENIGN")
                )
                row = {
                    "patient_id": pid,
                    "breast_density": str(rng.integers(1, 5)),
                    "breast density": str(rng.integers(1, 5)),
                    "left or right breast": side,
                    "image view": view,
                    "abnormality id": str(n),
                    "abnormality type": k,
                    "mass shape": "IRREGULAR" if m else "OVAL",
                    "mass margins": "SPICULATED" if m else "CIRCUMSCRIBED",
                    "calc type": "PLEOMORPHIC" if m else "ROUND_AND_REGULAR",
                    "calc distribution": "CLUSTERED",
                    "assessment": "5" if m else "2",
                    "pathology": pathology,
                    "subtlety": str(rng.integers(1, 6)),
                    "image file path": f"{full_rel}.dcm",
                    "cropped image file path": crop_rel,
                    "ROI mask file path": roi_rel + ("\n" if n == 1 and p % 4 == 1 else ""),
                }
                rows[(k, split)].append(row)
                label = f"{k}_{'malignant' if m else 'benign'}"
                summary.by_class[label] = summary.by_class.get(label, 0) + 1
    for (k, split), name in CBIS_CSV_NAMES.items():
        columns = CBIS_MASS_COLUMNS if k == "mass" else CBIS_CALC_COLUMNS
        with open(os.path.join(root, name), "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows[(k, split)])
    summary.patients = patients
    summary.quirks = {"swapped_crop_and_roi": "1 row", "trailing_newline_in_roi_path": "some rows"}
    summary.files = sum(len(names) for _, _, names in os.walk(root))
    return summary
