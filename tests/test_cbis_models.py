"""Patch and whole-image classifiers, the fine-tuning stages and the sliding-window heatmap."""
import numpy as np
import pytest

from breastdx_core import contract
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
