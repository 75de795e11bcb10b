import hashlib
import os
import re

import numpy as np
from PIL import Image

from components.image_ingest.layouts import IDC_NAME
from pipeline import synthetic


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            h.update(open(path, "rb").read())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    a = synthetic.write_idc(str(tmp_path / "a"), patients=3, patches_per_patient=6, seed=11)
    b = synthetic.write_idc(str(tmp_path / "b"), patients=3, patches_per_patient=6, seed=11)
    c = synthetic.write_idc(str(tmp_path / "c"), patients=3, patches_per_patient=6, seed=12)
    assert _digest(a.root) == _digest(b.root)
    assert _digest(a.root) != _digest(c.root)


def test_idc_layout_names_and_positive_rate(tmp_path):
    summary = synthetic.write_idc(
        str(tmp_path), patients=20, patches_per_patient=30, seed=5, quirks=False
    )
    names = [(d, n) for d, _, ns in os.walk(summary.root) for n in ns]
    assert len(names) == summary.images
    sizes = set()
    for dirpath, name in names:
        match = IDC_NAME.match(name)
        assert match, name
        pid, label = os.path.relpath(dirpath, summary.root).split(os.sep)
        assert match.group("pid") == pid and match.group("cls") == label
        sizes.add(Image.open(os.path.join(dirpath, name)).size)
    rate = summary.by_class["1"] / summary.images
    assert 0.2 < rate < 0.36  # the real set: 28 %
    assert (50, 50) in sizes and any(w < 50 or h < 50 for w, h in sizes)  # edge patches


def test_positive_patches_are_darker(tmp_path):
    rng = np.random.default_rng(0)
    neg = np.mean([synthetic.render_patch(rng, False).mean() for _ in range(20)])
    pos = np.mean([synthetic.render_patch(rng, True).mean() for _ in range(20)])
    assert pos < neg - 20


def test_quirks_are_planted(idc_tree):
    reasons = set(idc_tree.quirks.values())
    assert {"corrupt", "empty", "label_conflict", "not_an_image", "outside_layout"} <= reasons
    empty = [p for p, r in idc_tree.quirks.items() if r == "empty"][0]
    assert os.path.getsize(os.path.join(idc_tree.root, empty)) == 0


def test_busi_and_manifest_layouts(busi_tree, manifest_tree):
    for kind in synthetic.BUSI_CLASSES:
        files = os.listdir(os.path.join(busi_tree.root, kind))
        assert f"{kind} (1).png" in files and f"{kind} (1)_mask.png" in files
    assert "malignant (1)_mask_1.png" in os.listdir(os.path.join(busi_tree.root, "malignant"))
    lines = open(os.path.join(manifest_tree.root, "manifest.csv")).read().splitlines()
    assert lines[0] == "path,label,patient_id"
    assert re.match(r"images/P000_00\.png,IDC-(positive|negative),P000", lines[1])
