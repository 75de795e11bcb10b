"""The segmentation Transform module (image and mask on one geometry) and the U-Net builder."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from components.segmentation.trainer import unet_trainer_module as unet
from components.segmentation.transform import seg_transform_module as seg
from breastdx_core import contract
from pipeline import synthetic

SIZE = (64, 64)


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _busi_pair(kind="malignant", seed=1):
    image, masks = synthetic.render_ultrasound(np.random.default_rng(seed), kind, (60, 100))
    return _png(np.stack([image] * 3, -1)), _png(masks[0]) if masks else b"", image, masks


def test_mask_keeps_the_image_geometry():
    image_png, mask_png, _, _ = _busi_pair()
    out = seg.preprocessing_fn({contract.IMAGE_KEY: tf.constant([[image_png]]),
                                contract.MASK_KEY: tf.constant([[mask_png]]),
                                contract.LABEL_KEY: tf.constant([[2]], tf.int64)},
                               {"model_size": list(SIZE), "native_size": None})
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
    out = seg.preprocessing_fn({contract.IMAGE_KEY: tf.constant([[image_png], [image_png]]),
                                contract.MASK_KEY: tf.constant([[b""], [b""]])},
                               {"model_size": list(SIZE), "native_size": None})
    assert out[contract.TRANSFORMED_MASK_KEY].shape == (2, *SIZE)
    assert not out[contract.TRANSFORMED_MASK_KEY].numpy().any()
    serving = seg.preprocessing_fn({contract.IMAGE_KEY: tf.constant([[image_png]])},
                                   {"model_size": list(SIZE), "native_size": None})
    assert set(serving) == {contract.TRANSFORMED_IMAGE_KEY}


def test_unet_shapes_and_blackbox_targets():
    config = {"model_size": list(SIZE), "base_filters": 4, "depth": 3, "learning_rate": 1e-3}
    model = unet.build_unet(config)
    out = model(tf.zeros((2, *SIZE, 3)))
    assert out.shape == (2, *SIZE) and float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 1
    masks = tf.ones((3, 4, 4))
    labels = tf.constant([0, 1, 2], tf.int64)
    kept = unet.target_mask(masks, labels, {"blackbox": True, "positive_index": 2}).numpy()
    assert kept[:2].sum() == 0 and kept[2].sum() == 16  # only malignant masks survive
    assert unet.target_mask(masks, labels, {"blackbox": False}).numpy().sum() == 48
