"""CBIS-DDSM readers, the aspect-preserving resize and the S/S10 patch sets (components/mammo)."""

import csv
import os

import numpy as np
import pytest

from breastdx_core import contract
from components.mammo import cbis, images, patches
from pipeline import synthetic


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cbis"))
    summary = synthetic.write_cbis(root, patients=8, seed=3)
    return root, summary


def test_synthetic_release_has_the_real_csvs_and_columns(release):
    root, _ = release
    for name in cbis.CSV_FILES.values():
        with open(os.path.join(root, name)) as handle:
            header = next(csv.reader(handle))
        assert set(cbis.REQUIRED_COLUMNS) <= set(header)
    mass = open(os.path.join(root, "mass_case_description_train_set.csv")).read()
    assert ".dcm" in mass and "breast_density" in mass  # the real spellings and extensions


def test_reader_resolves_every_row_and_unswaps_roi_and_crop(release):
    root, summary = release
    abnormalities, problems = cbis.read_release(root)
    assert problems == []
    assert len(abnormalities) == sum(summary.by_class.values())
    for a in abnormalities:
        assert (
            os.path.isfile(a.image_path)
            and os.path.isfile(a.roi_mask_path)
            and os.path.isfile(a.cropped_path)
        )
        # The ROI mask has the mammogram's size, the crop is smaller, whatever the CSV said.
        assert images.image_size(a.roi_mask_path) == images.image_size(a.image_path)
        assert np.prod(images.image_size(a.cropped_path)) < np.prod(images.image_size(a.image_path))
        assert a.kind in ("mass", "calcification") and a.split in ("train", "test")
        assert contract.CBIS_PATCH_CLASSES[a.patch_class].startswith(
            "mass" if a.kind == "mass" else "calcification"
        )
    counts = {}
    for a in abnormalities:
        name = contract.CBIS_PATCH_CLASSES[a.patch_class]
        counts[name] = counts.get(name, 0) + 1
    assert counts == summary.by_class
    # The release's split is by patient.
    splits = {}
    for a in abnormalities:
        splits.setdefault(a.patient_id, set()).add(a.split)
    assert all(len(s) == 1 for s in splits.values())


def test_mammograms_group_abnormalities_and_take_malignant_if_any(release):
    root, summary = release
    abnormalities, _ = cbis.read_release(root)
    grouped = cbis.mammograms(abnormalities)
    assert len(grouped) == summary.images
    for m in grouped:
        assert m.malignant == any(a.pathology == "MALIGNANT" for a in m.abnormalities)
        assert {a.image_id for a in m.abnormalities} == {m.image_id}


def test_missing_files_and_columns_are_reported(tmp_path):
    (tmp_path / "CBIS-DDSM").mkdir()
    with open(tmp_path / "mass_case_description_train_set.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(cbis.REQUIRED_COLUMNS)
        writer.writerow(
            [
                "P_1",
                "LEFT",
                "CC",
                "mass",
                "BENIGN",
                "Mass-Training_P_1_LEFT_CC/a/b/000000.dcm",
                "x/000000.dcm",
                "x/000001.dcm",
            ]
        )
    found, problems = cbis.read_release(str(tmp_path))
    assert found == [] and len(problems) == 1 and "not found" in problems[0]
    with open(tmp_path / "mass_case_description_train_set.csv", "w") as handle:
        handle.write("patient_id,pathology\nP_1,BENIGN\n")
    with pytest.raises(cbis.CbisError, match="missing column"):
        cbis.read_release(str(tmp_path))
    with pytest.raises(cbis.CbisError, match="no CBIS-DDSM case-description CSV"):
        cbis.read_release(str(tmp_path / "CBIS-DDSM"))


def test_dicom_needs_pydicom_or_says_so(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\x00" * 200)
    try:
        import pydicom  # noqa: F401
    except ImportError:
        with pytest.raises(images.ImageReadError, match="pydicom"):
            images.read_image(str(path))


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2


@pytest.mark.parametrize("shape", [(500, 300), (300, 500), (1152, 896), (200, 201)])
def test_resize_keeps_aspect_and_pads_symmetrically(shape):
    target = (288, 224)
    image = np.full(shape, 0.8, np.float32)
    image[_disk(shape, shape[0] / 2, shape[1] / 2, min(shape) / 4)] = 0.2  # a circle in the middle
    out = images.resize_keep_aspect(image, target).numpy()
    assert out.shape == target
    geometry = images.fit_geometry(shape, target)
    rows = np.nonzero(out.max(axis=1) > 0)[0]
    cols = np.nonzero(out.max(axis=0) > 0)[0]
    top, bottom = rows[0], target[0] - 1 - rows[-1]
    left, right = cols[0], target[1] - 1 - cols[-1]
    assert (top, left) == (geometry.pad_top, geometry.pad_left)
    assert 0 <= bottom - top <= 1 and 0 <= right - left <= 1  # symmetric; the odd pixel at the end
    assert min(top, left) == 0  # it fits on one side: the largest scale
    # No distortion: the circle stays a circle.
    content = out[top : target[0] - bottom, left : target[1] - right]
    ys, xs = np.nonzero(content < 0.5 * (0.8 + 0.2))
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert abs(height - width) <= 2, (height, width)
    assert abs(geometry.resized[0] / geometry.resized[1] - shape[0] / shape[1]) < 0.02


def test_mask_follows_the_image_geometry():
    shape, target = (400, 260), (288, 224)
    mask = _disk(shape, 120, 90, 30)
    image = np.where(mask, 1.0, 0.3).astype(np.float32)
    out_image = images.resize_keep_aspect(image, target).numpy()
    out_mask = images.resize_mask(mask, target)
    assert out_mask.dtype == bool and out_mask.any()
    lesion = out_image > 0.65  # the lesion as the resized image shows it
    iou = (out_mask & lesion).sum() / (out_mask | lesion).sum()
    assert iou > 0.9, iou  # the mask lands on its lesion (edges differ by interpolation only)


def _image_with_rois(shape=(288, 224)):
    image = np.full(shape, 0.5, np.float32)
    small = _disk(shape, 80, 70, 9)  # smaller than a patch
    large = np.zeros(shape, bool)
    large[150:260, 100:210] = True  # larger than a patch
    return image, [(small, 4), (large, 1)]


@pytest.mark.parametrize("patch_set,count", [("S", 1), ("S10", 10)])
def test_roi_patches_overlap_at_least_90_percent(patch_set, count):
    image, rois = _image_with_rois()
    size = 56
    found = patches.extract_patches(image, rois, size, patch_set, seed=1, source="img")
    for mask, label in rois:
        mine = [p for p in found if p.label == label]
        assert len(mine) == count
        for p in mine:
            assert p.pixels.shape == (size, size)
            # recomputed independently of the module's own overlap()
            inside = mask[p.top : p.top + size, p.left : p.left + size].sum()
            assert inside / min(size * size, mask.sum()) >= 0.9
            assert p.overlap >= 0.9
        assert len({(p.top, p.left) for p in mine}) == len(mine)  # distinct patches


@pytest.mark.parametrize("patch_set,count", [("S", 1), ("S10", 10)])
def test_background_patches_lie_outside_every_roi_and_on_tissue(patch_set, count):
    image, rois = _image_with_rois()
    image[:, :30] = 0.0  # film, not breast
    union = rois[0][0] | rois[1][0]
    found = patches.extract_patches(image, rois, 56, patch_set, seed=2)
    background = [p for p in found if p.label == 0]
    assert len(background) == count
    for p in background:
        assert not union[p.top : p.top + 56, p.left : p.left + 56].any()
        assert (
            image[p.top : p.top + 56, p.left : p.left + 56] > patches.TISSUE_LEVEL
        ).mean() >= patches.MIN_TISSUE


def test_patch_folders_are_a_class_folder_layout_the_pipeline_reads(tmp_path):
    from components.image_ingest import layouts

    image, rois = _image_with_rois()
    found = patches.extract_patches(image, rois, 56, "S", seed=3)
    counts = patches.write_patch_folders(str(tmp_path), found, "P_00001", "P_00001_LEFT_CC")
    assert sum(counts.values()) == len(found)
    verdicts = list(layouts.scan(str(tmp_path), contract.get_task("cbis")))
    assert all(isinstance(v, layouts.Candidate) for v in verdicts)
    assert sorted(v.label for v in verdicts) == sorted(p.label for p in found)
    assert {v.patient_id for v in verdicts} == {"P_00001"}
