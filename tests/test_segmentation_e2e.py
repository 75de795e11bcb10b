"""The U-Net segmentation variant end to end on synthetic BUSI with masks (slow: e2e)."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from breastdx_core import contract
from components.segmentation.trainer import unet_trainer_module as unet

pytestmark = pytest.mark.e2e


pytest_plugins = ["conftest_presets"]


@pytest.fixture(scope="module")
def run(segmentation_run):
    return segmentation_run  # one run per session, shared with test_webapp_model_kinds.py


def test_pushed_unet_segments_png_bytes(run):
    config, data = run
    assert config.pipeline_name.endswith("-seg")
    model_dir = os.path.join(config.serving_root, config.model_name)
    [version] = os.listdir(model_dir)
    model = tf.saved_model.load(os.path.join(model_dir, version))
    png = sorted(glob.glob(os.path.join(data.root, "malignant", "malignant (*).png")))[0]
    out = model.signatures[unet.SIGNATURE_SEGMENT](
        **{contract.SERVING_INPUT_BYTES: tf.constant([open(png, "rb").read()])}
    )
    mask = out[unet.OUTPUT_MASK].numpy()
    assert mask.shape == (1, *contract.BUSI_MODEL_SIZE) and 0 <= mask.min() and mask.max() <= 1
    assert out[unet.OUTPUT_MASK_AREA].shape == (1,)
    card = json.load(open(os.path.join(model_dir, version, contract.MODEL_CARD_RELPATH)))
    seg = card["evaluation"]["metrics"]["segmentation"]
    assert {"dice", "jaccard", "tpr", "fpr", "global_dice"} <= set(seg)
    area = card["evaluation"]["metrics"]["area_classifier"]
    assert area["positive_class"] == "malignant" and area["area_threshold"] is not None
    assert card["version"] == int(version)


def test_trainer_wrote_the_metrics_file(run):
    config, _ = run
    [metrics_file] = glob.glob(
        os.path.join(
            config.pipeline_root,
            "Trainer",
            "model",
            "*",
            "Format-Serving",
            "assets.extra",
            unet.METRICS_FILE,
        )
    )
    result = json.load(open(metrics_file))
    assert result["blackbox"] is True and result["segmentation"]["n_images"] > 0
    assert np.isfinite(result["segmentation"]["fpr"])


def test_demo_summary_shows_the_unet_metrics_from_the_pushed_card(run):
    """`breastdx demo --variant segment` prints this summary: it must not score the U-Net as a
    classifier (it has no probabilities) and shows the card's Dice and area classifier."""
    from pipeline import summary

    config, _ = run
    facts = summary.summarize(config)
    assert "test_metrics" not in facts
    text = summary.render(facts)
    card_dice = facts["eval_metrics"]["segmentation"]["dice"]
    assert f"dice {card_dice:.3f}" in text
    assert "area classifier" in text and "eval (TFMA)" not in text
    assert contract.RESEARCH_ONLY in text
