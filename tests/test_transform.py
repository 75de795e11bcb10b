import io

import numpy as np
import tensorflow as tf
from PIL import Image

from breastdx_core import configs, contract
from components.transform import transform_module


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_preprocessing_fn_on_a_two_image_batch():
    full = np.full((50, 50, 3), 200, np.uint8)
    edge = np.full((30, 50), 100, np.uint8)  # a grey edge patch, smaller than 50x50
    cfg = configs.load(env={}).custom_config()
    out = transform_module.preprocessing_fn(
        {
            contract.IMAGE_KEY: tf.constant([[_png(full)], [_png(edge)]]),
            contract.LABEL_KEY: tf.constant([[0], [1]], tf.int64),
        },
        cfg,
    )
    images = out[contract.TRANSFORMED_IMAGE_KEY].numpy()
    assert images.shape == (2, *contract.IDC_MODEL_SIZE, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_allclose(
        images[0], 200 / 255, atol=1e-5
    )  # a full patch: scaled, not distorted
    # the edge patch keeps its pixel scale: zero padding above and below, grey in the middle
    centre = images[1, contract.IDC_MODEL_SIZE[0] // 2, contract.IDC_MODEL_SIZE[1] // 2]
    np.testing.assert_allclose(centre, [100 / 255] * 3, atol=1e-5)
    assert images[1, 0, 0, 0] == 0.0
    assert out[contract.LABEL_KEY].numpy().tolist() == [0, 1]


def test_resize_keeps_aspect_ratio_without_native_size():
    wide = np.full((40, 80, 3), 255, np.uint8)
    image = transform_module.decode_image(tf.constant(_png(wide)), (64, 64)).numpy()
    assert image.shape == (64, 64, 3)
    assert image[0, 32, 0] == 0.0 and image[32, 32, 0] == 1.0  # letterboxed, not stretched
