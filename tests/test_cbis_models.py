"""Patch and whole-image classifiers, the fine-tuning stages and the sliding-window heatmap."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from breastdx_core import configs, contract, model_card, pretrained
from components.mammo import heatmap, models


@pytest.fixture(scope="module")
def patch_model():
    return models.build_patch_classifier(32)


def test_stages_train_head_then_top_block_then_everything(patch_model):
    backbone = patch_model.get_layer(models.BACKBONE_NAME)
    models.set_trainable(patch_model, "head")
    assert len(patch_model.trainable_weights) == 2  # the softmax layer's kernel and bias
    models.set_trainable(patch_model, "top")
    trainable = [layer.name for layer in backbone.layers if layer.trainable]
    assert trainable and all(name.startswith("conv5_") for name in trainable)
    models.set_trainable(patch_model, "all")
    assert all(layer.trainable for layer in backbone.layers)
    assert [s.learning_rate for s in models.PATCH_SCHEDULE] == [1e-3, 1e-4, 1e-5]
    assert [s.trainable for s in models.PATCH_SCHEDULE] == ["head", "top", "all"]
    assert [s.trainable for s in models.WHOLE_SCHEDULE] == ["head", "all"]


def test_whole_image_model_reuses_the_patch_backbone(patch_model):
    whole = models.build_whole_image_classifier(patch_model, (96, 64))
    assert whole.get_layer(models.BACKBONE_NAME) is patch_model.get_layer(models.BACKBONE_NAME)
    assert whole.output_shape == (None, 1)
    assert whole.get_layer("top_block1_3_conv").filters == 1024
    assert whole.get_layer("top_block2_2_conv").filters == 512
    p = whole.predict(np.zeros((2, 96, 64, 1), np.float32), verbose=0)
    assert p.shape == (2, 1) and np.all((0 <= p) & (p <= 1))


@pytest.fixture(scope="module")
def lite_patch_model():
    """The preset's patch classifier: ImageNet EfficientNet-Lite0 (`make weights`' file)."""
    pretrained_dir = configs.PipelineConfig().training.pretrained_dir
    if pretrained.provenance(pretrained_dir, "efficientnet_lite0") is None:
        pytest.skip("no converted Lite0 weights: run `make weights`")
    return models.build_patch_classifier(
        32,
        weights=pretrained.IMAGENET,
        backbone="efficientnet_lite0",
        pretrained_dir=pretrained_dir,
    )


def _batchnorm(backbone):
    return [
        layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]


def test_lite0_stages_train_head_then_its_stride_32_blocks_then_everything(lite_patch_model):
    backbone = models.backbone_of(lite_patch_model)
    assert backbone.name == "efficientnet_lite0" and backbone.output_shape[-1] == 1280
    models.set_trainable(lite_patch_model, "head")
    assert len(lite_patch_model.trainable_weights) == 2
    models.set_trainable(lite_patch_model, "top")
    convolutions = [
        layer.name
        for layer in backbone.layers
        if layer.trainable
        and layer.weights
        and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    # block6 (4 blocks of expand, depthwise, project), block7a (3), the top convolution.
    assert len(convolutions) == 16 and {
        "block6a_dwconv",
        "block7a_project_conv",
        "top_conv",
    } <= set(convolutions)
    assert all(name.startswith(("block6", "block7", "top_")) for name in convolutions)
    assert not any(
        layer.trainable for layer in backbone.layers if layer.name.startswith(("stem", "block5"))
    )
    top_share = (
        sum(w.shape.num_elements() for w in lite_patch_model.trainable_weights)
        / backbone.count_params()
    )
    assert 0.5 < top_share < 1.0  # most of Lite0's weights sit at stride 32, as conv5 in ResNet50
    models.set_trainable(lite_patch_model, "all")
    assert all(
        layer.trainable
        for layer in backbone.layers
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    )
    for which in ("head", "top", "all"):  # pretrained: batch norm frozen in every stage
        models.set_trainable(lite_patch_model, which)
        assert not any(layer.trainable for layer in _batchnorm(backbone))


def test_pretrained_batchnorm_runs_in_inference_mode_and_keeps_imagenet_statistics(
    lite_patch_model,
):
    backbone = models.backbone_of(lite_patch_model)
    top_bn = backbone.get_layer("top_bn")
    before = [w.numpy().copy() for w in top_bn.weights]
    kernel_before = backbone.get_layer("top_conv").kernel.numpy().copy()
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 1), np.float32)
    y = rng.integers(0, len(contract.CBIS_PATCH_CLASSES), 8)
    models.train_in_stages(
        lite_patch_model,
        models.parse_schedule("top:0.01:1"),
        (x, y),
        (x, y),
        "sparse_categorical_crossentropy",
        [],
        batch_size=4,
        augment=False,
    )
    assert not np.allclose(
        backbone.get_layer("top_conv").kernel.numpy(), kernel_before
    )  # it trained
    for after, start in zip(
        top_bn.weights, before
    ):  # gamma, beta and the ImageNet moving statistics
        np.testing.assert_array_equal(after.numpy(), start)
    features = tf.random.normal((2, 1, 1, 1280))
    np.testing.assert_allclose(
        top_bn(features, training=True), top_bn(features, training=False), rtol=1e-6
    )


def test_lite0_whole_image_model_warm_starts_from_the_saved_patch_model(lite_patch_model, tmp_path):
    from components.mammo.whole_trainer import whole_trainer_module

    lite_patch_model.save(str(tmp_path / "patch"), save_format="tf", include_optimizer=False)
    loaded = whole_trainer_module.load_patch_model(str(tmp_path / "patch"))
    patches = np.random.default_rng(1).random((2, 32, 32, 1), np.float32)
    np.testing.assert_allclose(
        loaded.predict(patches, verbose=0), lite_patch_model.predict(patches, verbose=0), atol=1e-5
    )
    whole = models.build_whole_image_classifier(loaded, (96, 64), weights=pretrained.IMAGENET)
    assert models.backbone_of(whole) is models.backbone_of(loaded)
    assert (
        whole.get_layer("top_block1_proj").input_shape[-1] == 1280
    )  # the projection takes Lite's channels
    models.set_trainable(whole, "all")
    assert not any(layer.trainable for layer in _batchnorm(models.backbone_of(whole)))
    assert whole.predict(np.zeros((1, 96, 64, 1), np.float32), verbose=0).shape == (1, 1)


def test_card_provenance_names_the_package_or_random():
    pretrained_dir = configs.PipelineConfig().training.pretrained_dir
    record = pretrained.provenance(pretrained_dir, "efficientnet_lite0")
    if record is None:
        pytest.skip("no converted Lite0 weights: run `make weights`")
    lite = models.weights_provenance("efficientnet_lite0", pretrained.IMAGENET, pretrained_dir)
    source = pretrained.PRETRAINED["efficientnet_lite0"]
    assert lite["weights_provenance"]["package"] == source.package
    assert lite["weights_provenance"]["package_file_sha256"] == source.sha256
    assert lite["weights_provenance"]["sha256"] == record["sha256"]
    random = models.weights_provenance("resnet50", None, pretrained_dir)["weights_provenance"]
    assert random["source"] == "random" and random["backbone"] == "resnet50"
    import jsonschema

    schema = model_card.schema()["properties"]["weights_provenance"]
    jsonschema.validate(lite["weights_provenance"], schema)
    jsonschema.validate(random, schema)


def test_window_origins_cover_the_image():
    assert window_list(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert window_list(20, 32, 8) == [0]


def window_list(length, size, stride):
    return heatmap.window_origins(length, size, stride).tolist()


def test_sliding_window_heatmap_finds_the_bright_spot():
    image = np.zeros((64, 48), np.float32)
    image[40:48, 8:16] = 1.0
    n = len(contract.CBIS_PATCH_CLASSES)

    def predict(patches):  # "malignant mass" where the patch holds the spot
        p = np.zeros((len(patches), n), np.float32)
        bright = patches.reshape(len(patches), -1).max(axis=1) > 0.5
        p[bright, contract.CBIS_PATCH_CLASSES.index("mass_malignant")] = 1
        p[~bright, 0] = 1
        return p

    grid, rows, cols = heatmap.sliding_window_heatmap(predict, image, 16, 8)
    assert grid.shape == (len(rows), len(cols), n)
    score = heatmap.malignant_map(heatmap.to_image_grid(grid, rows, cols, 16, image.shape))
    assert score.shape == image.shape
    assert score[44, 12] == 1.0 and score[5, 40] == 0.0
    overlay = heatmap.render_overlay(image, score)
    assert overlay.shape == (64, 48, 3) and overlay.dtype == np.uint8
