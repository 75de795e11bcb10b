"""The mammography run end to end on a tiny synthetic CBIS-DDSM release (slow: e2e)."""
import glob
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from pipeline import contract
from pipeline.mammo import demo, models

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cbis_e2e"))
    config = demo.MammoConfig(workdir=workdir, synthetic_patients=12, seed=5,
                              patch_schedule=(models.Stage("head", 1e-3, 1), models.Stage("top", 1e-3, 1),
                                              models.Stage("all", 1e-3, 4)),
                              whole_schedule=(models.Stage("head", 1e-3, 1), models.Stage("all", 1e-4, 1)))
    return config, demo.run(config)


def test_patch_and_whole_image_models_are_pushed_and_answer_bytes(run):
    config, summary = run
    assert set(summary["pushed"]) == {"patch", "whole"}, summary
    patch_dir = summary["pushed"]["patch"]
    model = tf.saved_model.load(patch_dir)
    patch_png = sorted(glob.glob(os.path.join(summary["patches_dir"], "*", "*", "*.png")))[0]
    out = model.signatures[contract.SIGNATURE_BYTES](
        **{contract.SERVING_INPUT_BYTES: tf.constant([open(patch_png, "rb").read()])})
    assert out[contract.OUTPUT_PROBABILITIES].shape == (1, len(contract.CBIS_PATCH_CLASSES))
    whole = tf.saved_model.load(summary["pushed"]["whole"])
    mammogram = sorted(glob.glob(os.path.join(config.data_root, "CBIS-DDSM", "*", "*", "*", "000000.png")))[0]
    out = whole.signatures[contract.SIGNATURE_BYTES](
        **{contract.SERVING_INPUT_BYTES: tf.constant([open(mammogram, "rb").read()])})
    assert out[contract.OUTPUT_PROBABILITIES].shape == (1, 2)
    heat = whole.signatures[demo.SIGNATURE_HEATMAP](
        **{contract.SERVING_INPUT_BYTES: tf.constant([open(mammogram, "rb").read()])})[demo.SIGNATURE_HEATMAP]
    assert heat.shape[0] == 1 and heat.shape[-1] == len(contract.CBIS_PATCH_CLASSES)
    np.testing.assert_allclose(heat.numpy().sum(-1), 1.0, rtol=1e-4)
    card = json.load(open(os.path.join(patch_dir, contract.MODEL_CARD_RELPATH)))
    assert card["evaluation"]["metrics"]["accuracy"] >= config.min_patch_accuracy
    assert "not a diagnosis" in card["intended_use"]


def test_patch_model_beats_chance_and_heatmap_is_written(run):
    _, summary = run
    assert summary["patch"]["accuracy"] > 1.0 / len(contract.CBIS_PATCH_CLASSES)
    assert os.path.exists(summary["heatmap"]) and os.path.exists(summary["heatmap"][:-4] + ".npy")
    assert summary["patch_counts"]["train"]["background"] > 0
