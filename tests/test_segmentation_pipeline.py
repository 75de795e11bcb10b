"""The segmentation variant's wiring (pipeline.pipeline.create_segmentation_pipeline)."""

import json

import pytest

from breastdx_core import configs
from pipeline.pipeline import create_pipeline


def test_variant_switch_wires_the_unet_pipeline(tmp_path):
    config = configs.load(
        env={}, workdir=str(tmp_path), task="busi", variant="segment", seg_blackbox=True
    )
    assert config.pipeline_name == "breastdx-busi-seg"
    pipeline = create_pipeline(config)
    ids = sorted(c.id for c in pipeline.components)
    assert ids == sorted(
        [
            "ImageExampleGen",
            "StatisticsGen",
            "ImportSchemaGen",
            "ExampleValidator",
            "AnomalyGate",
            "Transform",
            "Trainer",
            "Pusher",
        ]
    )
    parts = {c.id: c for c in pipeline.components}
    assert parts["ImageExampleGen"].exec_properties["include_masks"] == 1
    assert (
        parts["ImportSchemaGen"].exec_properties["schema_file"].endswith("busi_segmentation.pbtxt")
    )
    assert "segmentation" in parts["Transform"].exec_properties["module_file"]
    sent = json.loads(parts["Trainer"].exec_properties["custom_config"])
    assert sent["segmentation"]["blackbox"] is True and sent["task"]["positive_index"] == 2


def test_classifier_pipeline_is_unchanged_by_the_variant_fields(tmp_path):
    config = configs.load(env={}, workdir=str(tmp_path), task="busi")
    parts = {c.id: c for c in create_pipeline(config).components}
    assert (
        "Evaluator" in parts
        and parts["ImageExampleGen"].exec_properties.get("include_masks") is None
    )


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="variant must be one of"):
        configs.load(env={"BREASTDX_VARIANT": "detect"})
