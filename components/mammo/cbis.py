"""Readers for the CBIS-DDSM release: its four case-description CSVs and image folders.

CbisExampleGen (components/mammo/ingest.py), the mammography run's preflight
(`preflight`, from local_runner.py), `breastdx demo --variant mammo`'s summary and the
tests call `read_release()`. The real release (TCIA, Lee et al. 2017) ships

* ``mass_case_description_{train,test}_set.csv`` and ``calc_case_description_{train,test}_set.csv``,
  one row per abnormality: ``patient_id``, ``left or right breast``, ``image view``,
  ``abnormality id``, ``abnormality type``, ``pathology`` (MALIGNANT, BENIGN,
  BENIGN_WITHOUT_CALLBACK), ``image file path``, ``cropped image file path``,
  ``ROI mask file path`` (and density, shape, margins, assessment, subtlety);
* the images as ``<series>/<study uid>/<series uid>/0000NN.dcm``, the series named like
  ``Mass-Training_P_00001_LEFT_CC`` (full mammogram) and ``..._CC_1`` (ROI mask and
  cropped ROI of abnormality 1).

What the reader copes with, all seen in the real files: paths with trailing newlines
or spaces; the mass CSVs spell ``breast_density``, the calc CSVs ``breast density``;
copies converted to PNG/TIFF whose CSVs still say ``.dcm``, or whose uid folders were
renamed (then the series folder is searched); and rows whose cropped-image and
ROI-mask paths are swapped (the ROI mask has the full image's size, the crop is small).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence

from breastdx_core import contract, errors

log = logging.getLogger(__name__)

CSV_FILES = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calcification", "train"): "calc_case_description_train_set.csv",
    ("calcification", "test"): "calc_case_description_test_set.csv",
}
REQUIRED_COLUMNS = (
    "patient_id",
    "left or right breast",
    "image view",
    "abnormality type",
    "pathology",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
)
IMAGE_EXTENSIONS = (".dcm", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
MALIGNANT = "MALIGNANT"
BACKGROUND_CLASS = 0
# The pipeline's splits (`pipeline_splits`), as the ingest summary and the model card state them.
SPLITS = ("train", "eval", "test")
SPLIT_DESIGN = {
    "train": "the release's train patients less those held out as eval",
    "eval": "a share of the release's train patients, stratified by label (calibration, operating "
    "threshold, the Evaluator's blessing)",
    "test": "the release's own test split, held out (what the model card claims)",
}


class CbisError(errors.UserError):
    """The folder is not a readable CBIS-DDSM release (names what is missing)."""


@dataclasses.dataclass(frozen=True)
class Abnormality:
    """One CSV row: an abnormality on one mammogram, with its files resolved."""

    patient_id: str
    side: str  # LEFT or RIGHT
    view: str  # CC or MLO
    abnormality_id: int
    kind: str  # "mass" or "calcification"
    pathology: str  # MALIGNANT, BENIGN or BENIGN_WITHOUT_CALLBACK
    split: str  # "train" or "test" (the release's own split, by patient)
    image_path: str
    roi_mask_path: str
    cropped_path: str

    @property
    def malignant(self) -> bool:
        return self.pathology.upper() == MALIGNANT

    @property
    def image_id(self) -> str:
        """One mammogram: patient, side and view (mass and calc rows share it)."""
        return f"{self.patient_id}_{self.side}_{self.view}"

    @property
    def patch_class(self) -> int:
        """Index into contract.CBIS_PATCH_CLASSES (BENIGN_WITHOUT_CALLBACK is benign)."""
        name = f"{'mass' if self.kind == 'mass' else 'calcification'}_{'malignant' if self.malignant else 'benign'}"
        return contract.CBIS_PATCH_CLASSES.index(name)


@dataclasses.dataclass
class Mammogram:
    """A whole mammogram and every abnormality on it; malignant if any is."""

    image_id: str
    patient_id: str
    split: str
    image_path: str
    abnormalities: list[Abnormality]

    @property
    def malignant(self) -> bool:
        return any(a.malignant for a in self.abnormalities)


def _clean(value: str | None) -> str:
    return (value or "").strip().strip('"').strip()


def resolve(images_root: str, csv_path: str) -> str | None:
    """The file a CSV path names under ``images_root``: as written, with another image
    extension, or the only image file(s) in its series folder; None when absent.
    Returns the first of several candidates in a series folder (sorted)."""
    rel = _clean(csv_path).replace("\\", "/")
    if not rel:
        return None
    path = os.path.join(images_root, rel)
    if os.path.isfile(path):
        return path
    stem = os.path.splitext(path)[0]
    for ext in IMAGE_EXTENSIONS:
        if os.path.isfile(stem + ext):
            return stem + ext
    candidates = series_files(images_root, rel.split("/")[0])
    wanted = os.path.splitext(os.path.basename(rel))[0]
    same_name = [c for c in candidates if os.path.splitext(os.path.basename(c))[0] == wanted]
    if same_name:
        return same_name[0]
    return candidates[0] if len(candidates) == 1 else None


def series_files(images_root: str, series: str) -> list[str]:
    """Every image file below ``images_root/series`` (sorted)."""
    found = []
    for dirpath, _dirs, names in os.walk(os.path.join(images_root, series)):
        found.extend(
            os.path.join(dirpath, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)
        )
    return sorted(found)


def _pixel_count(path: str) -> int:
    from components.mammo import images

    height, width = images.image_size(path)
    return height * width


def _roi_and_crop(
    images_root: str, image_path: str, roi_csv: str, crop_csv: str
) -> tuple[str, str]:
    """(ROI mask path, cropped image path), swapped back where the CSV swapped them: the
    mask is the one with the full image's size (or, failing that, the larger one)."""
    roi, crop = resolve(images_root, roi_csv), resolve(images_root, crop_csv)
    if roi and crop and roi != crop:
        full = _pixel_count(image_path)
        roi_pixels, crop_pixels = _pixel_count(roi), _pixel_count(crop)
        if abs(crop_pixels - full) < abs(roi_pixels - full):
            return crop, roi
    if roi and not crop:
        # One file found for both columns (a series folder with mask and crop): take by size.
        files = series_files(images_root, _clean(roi_csv).split("/")[0])
        if len(files) == 2:
            files.sort(key=_pixel_count)
            return files[1], files[0]
    return roi or "", crop or ""


def read_csv(
    path: str, kind: str, split: str, images_root: str
) -> tuple[list[Abnormality], list[str]]:
    """Abnormalities of one case-description CSV, and a problem line per unusable row.

    Raises:
        CbisError: the CSV lacks a required column.
    """
    abnormalities: list[Abnormality] = []
    problems: list[str] = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [_clean(c) for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise CbisError(f"{path}: missing column(s) {missing}; found {columns}")
        for line, raw in enumerate(reader, start=2):
            row = {_clean(k): _clean(v) for k, v in raw.items() if k}
            where = f"{os.path.basename(path)}:{line}"
            image = resolve(images_root, row["image file path"])
            if image is None:
                problems.append(
                    f"{where}: image {row['image file path']!r} not found under {images_root}"
                )
                continue
            roi, crop = _roi_and_crop(
                images_root, image, row["ROI mask file path"], row["cropped image file path"]
            )
            if not roi:
                problems.append(f"{where}: ROI mask {row['ROI mask file path']!r} not found")
                continue
            row_kind = row["abnormality type"].lower() or kind
            abnormalities.append(
                Abnormality(
                    patient_id=row["patient_id"],
                    side=row["left or right breast"].upper(),
                    view=row["image view"].upper(),
                    abnormality_id=int(row.get("abnormality id") or 1),
                    kind="mass" if row_kind.startswith("mass") else "calcification",
                    pathology=row["pathology"].upper(),
                    split=split,
                    image_path=image,
                    roi_mask_path=roi,
                    cropped_path=crop,
                )
            )
    return abnormalities, problems


def find_images_root(root: str) -> str:
    """The folder the CSV paths are relative to: ``root/CBIS-DDSM`` when it exists
    (TCIA's download folder), else ``root``."""
    nested = os.path.join(root, "CBIS-DDSM")
    return nested if os.path.isdir(nested) else root


def read_release(
    root: str, images_root: str | None = None, kinds: Sequence[str] = ("mass", "calcification")
) -> tuple[list[Abnormality], list[str]]:
    """Every abnormality of the release at ``root`` (the CSVs there or in ``root/csv``),
    and the problems found (rows whose files are missing).

    Raises:
        CbisError: no case-description CSV found.
    """
    images_root = images_root or find_images_root(root)
    found: list[Abnormality] = []
    problems: list[str] = []
    seen_csv = 0
    for (kind, split), name in CSV_FILES.items():
        if kind not in kinds:
            continue
        for folder in (root, os.path.join(root, "csv")):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                seen_csv += 1
                rows, bad = read_csv(path, kind, split, images_root)
                found.extend(rows)
                problems.extend(bad)
                break
    if not seen_csv:
        raise CbisError(
            f"no CBIS-DDSM case-description CSV ({', '.join(CSV_FILES.values())}) in {root!r} "
            f"or {os.path.join(root, 'csv')!r}"
        )
    for problem in problems:
        log.warning("CBIS-DDSM: %s", problem)
    return found, problems


def mammograms(abnormalities: Iterable[Abnormality]) -> list[Mammogram]:
    """Abnormalities grouped by mammogram (patient, side, view), in a stable order."""
    grouped: dict[str, Mammogram] = {}
    for a in abnormalities:
        m = grouped.setdefault(
            a.image_id, Mammogram(a.image_id, a.patient_id, a.split, a.image_path, [])
        )
        m.abnormalities.append(a)
    return [grouped[k] for k in sorted(grouped)]


def pipeline_splits(
    mammograms_: Sequence[Mammogram], eval_fraction: float, seed: int
) -> dict[str, str]:
    """{patient_id: "train" | "eval" | "test"}: the pipeline's three splits, by patient.

    The release's test patients are the pipeline's ``test`` split, untouched (what the
    model card claims is measured there, comparable with work on the official split).
    ``eval`` (calibration: conformal sets, operating threshold, the Evaluator's blessing)
    is ``eval_fraction`` of the release's *train* patients, stratified by the patient's
    label (malignant if any of their mammograms is) so that both classes are there: of
    each class's n patients, round(n * eval_fraction) (at least 1 when n >= 2), chosen by
    a seeded hash of the patient id. The rest are ``train``. Calibration and claims thus
    never share a patient, and no patient is in two splits.
    """
    import hashlib

    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must lie in (0, 1), got {eval_fraction}")
    malignant: dict[str, bool] = {}
    release_split: dict[str, str] = {}
    for m in mammograms_:
        malignant[m.patient_id] = malignant.get(m.patient_id, False) or m.malignant
        release_split[m.patient_id] = m.split
    splits = {pid: ("test" if split == "test" else "train") for pid, split in release_split.items()}
    for label in (False, True):
        group = sorted(
            (
                pid
                for pid, split in release_split.items()
                if split == "train" and malignant[pid] == label
            ),
            key=lambda pid: hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest(),
        )
        held = int(round(len(group) * eval_fraction))
        if len(group) >= 2:
            held = min(max(held, 1), len(group) - 1)
        for pid in group[:held]:
            splits[pid] = "eval"
    return splits


def preflight(root: str) -> tuple[int, int]:
    """The mammography pipeline's check before it starts (local_runner.py turns the error
    into its PreflightError): the release at ``root`` has readable CSV rows in both of
    its splits. Returns (mammograms, abnormalities).

    Raises:
        CbisError: naming what is missing.
    """
    if not os.path.isdir(root):
        raise CbisError(
            f"{root}: the CBIS-DDSM release folder does not exist (expected the four "
            f"case-description CSVs and the CBIS-DDSM/ image folder)"
        )
    abnormalities, problems = read_release(root)
    splits = {a.split for a in abnormalities}
    if splits != {"train", "test"}:
        raise CbisError(
            f"{root}: usable rows in split(s) {sorted(splits) or 'none'}; the pipeline needs "
            f"train and test rows with their images and ROI masks ({len(problems)} row(s) "
            f"unusable, e.g. {problems[:2]})"
        )
    return len(mammograms(abnormalities)), len(abnormalities)
