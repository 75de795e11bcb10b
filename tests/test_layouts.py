import pytest

from breastdx_core import contract
from components.image_ingest import layouts

IDC = contract.get_task("idc")
BUSI = contract.get_task("busi")


def _verdicts(root, task, layout="auto"):
    return list(layouts.scan(root, task, layout))


def test_detect(idc_tree, busi_tree, manifest_tree):
    assert layouts.detect(idc_tree.root, IDC) == "idc"
    assert layouts.detect(busi_tree.root, BUSI) == "class_folders"
    assert layouts.detect(manifest_tree.root, IDC) == "manifest"


def test_detect_errors(tmp_path):
    with pytest.raises(layouts.LayoutError, match="does not exist"):
        layouts.detect(str(tmp_path / "nope"), IDC)
    with pytest.raises(layouts.LayoutError, match="is empty"):
        layouts.detect(str(tmp_path), IDC)
    (tmp_path / "loose.png").write_bytes(b"x")
    with pytest.raises(layouts.LayoutError, match="no sub-folders"):
        layouts.detect(str(tmp_path), IDC)


def test_idc_reader_accounts_for_every_file(idc_tree):
    verdicts = _verdicts(idc_tree.root, IDC)
    assert len(verdicts) == idc_tree.files
    skipped = {v.rel: v.reason for v in verdicts if isinstance(v, layouts.Skipped)}
    for rel, reason in idc_tree.quirks.items():
        if reason in ("outside_layout", "label_conflict"):  # decided from the path alone
            assert skipped[rel] == reason
    candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
    for c in candidates:
        pid, label, _ = c.rel.split("/")
        assert c.patient_id == pid and c.label == int(label)


def test_idc_unknown_label_folder(tmp_path, idc_tree):
    bad = tmp_path / "123" / "7"
    bad.mkdir(parents=True)
    (bad / "123_idx5_x1_y1_class7.png").write_bytes(b"\x89PNG")
    (tmp_path / "123" / "1").mkdir()
    verdicts = _verdicts(str(tmp_path), IDC, "idc")
    assert [v.reason for v in verdicts] == ["unknown_label"]


def test_class_folders_pairs_masks_and_never_ingests_them(busi_tree):
    verdicts = _verdicts(busi_tree.root, BUSI)
    masks = [v for v in verdicts if isinstance(v, layouts.Skipped)]
    assert masks and all(v.reason == "mask_file" for v in masks)
    assert all("_mask" not in v.rel for v in verdicts if isinstance(v, layouts.Candidate))
    images = [v for v in verdicts if isinstance(v, layouts.Candidate)]
    assert len(images) == busi_tree.images
    assert {BUSI.class_names[v.label] for v in images} == set(BUSI.class_names)
    assert len({v.patient_id for v in images}) == len(images)  # no ids in BUSI: one group per image


def test_manifest_reader(manifest_tree):
    verdicts = _verdicts(manifest_tree.root, IDC)
    candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
    skipped = {v.rel: v.reason for v in verdicts if isinstance(v, layouts.Skipped)}
    assert len(candidates) == manifest_tree.images
    assert skipped["images/missing.png"] == "missing_file"
    assert skipped["manifest.csv"] == "manifest_file"
    assert {c.patient_id for c in candidates} == {"P000", "P001"}


def test_manifest_unknown_label_and_unlisted_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text("path,label\na.png,cat\n")
    reasons = {v.rel: v.reason for v in _verdicts(str(tmp_path), IDC)}
    assert reasons == {
        "a.png": "unknown_label",
        "b.png": "not_in_manifest",
        "manifest.csv": "manifest_file",
    }


def test_manifest_bad_header(tmp_path):
    (tmp_path / "manifest.csv").write_text("file,class\n")
    with pytest.raises(layouts.LayoutError, match="path,label"):
        _verdicts(str(tmp_path), IDC)


def test_fingerprint_changes_with_the_tree(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    first = layouts.fingerprint(str(tmp_path))
    assert layouts.fingerprint(str(tmp_path)) == first
    (tmp_path / "b").write_bytes(b"2")
    assert layouts.fingerprint(str(tmp_path)) != first
