"""BUSI: the synthetic generator, masks paired to their images, the preset's defaults."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from breastdx_core import configs, contract
from components.image_ingest import executor, layouts
from pipeline import synthetic

BUSI = contract.get_task("busi")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("busi"))
    return synthetic.write_busi(root, counts={"normal": 2, "benign": 6, "malignant": 3}, seed=4)


def _grey(path):
    return np.asarray(Image.open(path).convert("L"))


def test_default_counts_keep_the_real_imbalance():
    assert (
        synthetic.BUSI_DEMO_COUNTS["benign"]
        > synthetic.BUSI_DEMO_COUNTS["malignant"]
        > synthetic.BUSI_DEMO_COUNTS["normal"]
    )


def test_classes_look_different(tree):
    """Lesions are dark (hypoechoic), malignant ones darker; normal images have none."""
    means = {}
    for kind in synthetic.BUSI_CLASSES:
        inside = []
        for n in range(1, tree.by_class[kind] + 1):
            image = _grey(os.path.join(tree.root, kind, f"{kind} ({n}).png"))
            mask = _grey(os.path.join(tree.root, kind, f"{kind} ({n})_mask.png")) > 127
            if kind == "normal":
                assert not mask.any()
                continue
            assert mask.mean() > 0.02  # big enough to learn at 128x128
            inside.append(image[mask].mean() / image[~mask].mean())
        means[kind] = np.mean(inside) if inside else None
    assert means["malignant"] < means["benign"] < 0.6


def test_masks_are_paired_to_their_images_and_never_ingested(tree):
    verdicts = list(layouts.scan(tree.root, BUSI))
    images = [v for v in verdicts if isinstance(v, layouts.Candidate)]
    skipped = [v for v in verdicts if isinstance(v, layouts.Skipped)]
    assert len(images) == tree.images
    assert (
        all(v.reason == "mask_file" for v in skipped) and len(skipped) == tree.files - tree.images
    )
    for v in images:
        assert "_mask" not in v.rel
        assert v.masks, v.rel  # every BUSI image has at least its _mask.png
        stem = os.path.splitext(v.path)[0]
        assert v.masks[0] == stem + "_mask.png"
        assert all(m.startswith(stem + "_mask") for m in v.masks)
    two = [v for v in images if len(v.masks) == 2]
    assert any(v.rel == "malignant/malignant (1).png" for v in two)
    assert two[0].masks[1].endswith("_mask_1.png")


def test_similar_names_do_not_steal_masks(tmp_path):
    for name in (
        "benign (1).png",
        "benign (1)_mask.png",
        "benign (11).png",
        "benign (11)_mask.png",
        "benign (11)_mask_1.png",
    ):
        (tmp_path / "benign").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "benign" / name)
    found = {
        v.rel: [os.path.basename(m) for m in v.masks]
        for v in layouts.scan(str(tmp_path), BUSI)
        if isinstance(v, layouts.Candidate)
    }
    assert found == {
        "benign/benign (1).png": ["benign (1)_mask.png"],
        "benign/benign (11).png": ["benign (11)_mask.png", "benign (11)_mask_1.png"],
    }


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_several_masks_are_merged_by_union():
    a = np.zeros((6, 6), np.uint8)
    b = np.zeros((6, 6), np.uint8)
    a[1:3, 1:3] = 255
    b[2:5, 3:6] = 255
    merged = np.asarray(Image.open(io.BytesIO(executor.merge_masks([_png(a), _png(b)]))))
    assert np.array_equal(merged > 127, (a > 0) | (b > 0))
    assert executor.merge_masks([_png(a)]) == _png(a)  # one mask: its own bytes
    assert executor.merge_masks([]) == b""


def test_records_carry_the_mask_only_when_asked(tree):
    [candidate] = [
        v
        for v in layouts.scan(tree.root, BUSI)
        if isinstance(v, layouts.Candidate) and v.rel == "malignant/malignant (1).png"
    ]
    plain, outcome = executor.read_candidate(candidate, "structure")
    assert outcome.ok if hasattr(outcome, "ok") else plain
    assert contract.MASK_KEY not in tf.train.Example.FromString(plain).features.feature
    with_mask, _ = executor.read_candidate(candidate, "structure", include_masks=True)
    feature = tf.train.Example.FromString(with_mask).features.feature[contract.MASK_KEY]
    mask = np.asarray(Image.open(io.BytesIO(feature.bytes_list.value[0]))) > 127
    union = np.zeros_like(mask)
    for path in candidate.masks:
        union |= _grey(path) > 127
    assert np.array_equal(mask, union)


def test_busi_preset_defaults_and_overrides():
    config = configs.load(env={}, task="busi")
    assert (
        config.training.backbone == "efficientnet_lite0" and config.training.weights == "imagenet"
    )  # pretrained by default
    assert config.task_spec.num_classes == 3
    assert config.training.batch_size == 16 and config.evaluation.auc_lower_bound == 0.8
    assert (
        configs.load(env={}).training.backbone == "vgg16"
        and configs.load(env={}).training.batch_size == 32
    )  # IDC unchanged
    assert (
        configs.load(env={"BREASTDX_BACKBONE": "vgg16"}, task="busi").training.backbone == "vgg16"
    )
    assert configs.load(env={}, task="busi", backbone="xception").training.backbone == "xception"
    assert config.task_spec.image.native_size is None  # aspect kept and padded by the Transform
