"""H&E stain augmentation: random jitter of the haematoxylin, eosin and DAB channels, and
colour (brightness, contrast, saturation, hue) jitter.

Called by `data.input_fn` on the train split only (``stain_jitter`` > 0 in the Trainer's
``custom_config``), never in the Transform graph that serving shares: the model should
see the spread of stain colours that different labs and scanners produce, not a
different input at serving time. The method is Tellez et al. 2018 ("Whole-slide mitosis
detection in H&E breast histology using PHH3 as a reference to train distilled
stain-invariant convolutional networks", IEEE TMI), the "HED-light" setting being 0.05:
the image is split into stain optical densities with Ruifrok & Johnston's colour
deconvolution matrix (Anal Quant Cytol Histol 2001; the one scikit-image's ``rgb2hed``
uses), each stain is scaled by ``U(1-s, 1+s)`` and shifted by ``U(-s, s)``, and the
result is mixed back to RGB. Written in TensorFlow because it must run inside tf.data;
scikit-image is not in the pinned stack, so tests check it against the published matrix.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Rows: the RGB optical-density direction of haematoxylin, eosin and DAB
# (Ruifrok & Johnston 2001; scikit-image's `rgb_from_hed`).
RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32
)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)
# Intensities are floored before the logarithm: a black pixel would otherwise have an
# infinite optical density.
_FLOOR = 1e-6


def rgb_to_hed(images: tf.Tensor) -> tf.Tensor:
    """float32 [..., 3] RGB in [0, 1] -> [..., 3] stain optical densities (H, E, D).

    Optical density is ``-log(I)`` (natural log, as scikit-image before 0.19 and Tellez et
    al. used it, so their jitter strengths mean the same here). Not clipped at 0 (unlike
    scikit-image): the round trip is then exact, and zero jitter leaves every pixel as it was.
    """
    optical = -tf.math.log(tf.maximum(images, _FLOOR))
    return tf.tensordot(optical, tf.constant(HED_FROM_RGB), axes=1)


def hed_to_rgb(stains: tf.Tensor) -> tf.Tensor:
    """The inverse of `rgb_to_hed`: [..., 3] stain densities -> RGB in [0, 1]."""
    return tf.clip_by_value(
        tf.exp(-tf.tensordot(stains, tf.constant(RGB_FROM_HED), axes=1)), 0.0, 1.0
    )


def hed_jitter(images: tf.Tensor, strength: float, seed: int | None = None) -> tf.Tensor:
    """Randomly re-stains a batch, one draw per image.

    Args:
        images: float32 [batch, height, width, 3] RGB in [0, 1] (the Transform output).
        strength: s of ``alpha ~ U(1-s, 1+s)``, ``beta ~ U(-s, s)`` per stain channel; 0 returns
            the images unchanged.
        seed: op seed (the global seed set by `run_fn` makes runs repeatable).

    Returns:
        float32 [batch, height, width, 3] in [0, 1].
    """
    if strength <= 0:
        return images
    batch = tf.shape(images)[0]
    alpha = tf.random.uniform([batch, 1, 1, 3], 1.0 - strength, 1.0 + strength, seed=seed)
    beta = tf.random.uniform(
        [batch, 1, 1, 3], -strength, strength, seed=None if seed is None else seed + 1
    )
    return hed_to_rgb(rgb_to_hed(images) * alpha + beta)


def color_jitter(images: tf.Tensor, strength: float, seed: int | None = None) -> tf.Tensor:
    """Randomly changes brightness, contrast, saturation and hue, one draw per image: the
    spread of scanners and staining protocols in RGB terms, beside `hed_jitter`'s in stain
    terms (Tellez et al. 2019, "Quantifying the effects of data augmentation and stain
    color normalization in convolutional neural networks for computational pathology",
    Med Image Anal, compared both families).

    Args:
        images: float32 [batch, height, width, 3] RGB in [0, 1].
        strength: s: brightness (the HSV value), contrast about each image's mean and
            saturation each scaled by ``U(1-s, 1+s)``, hue turned by ``U(-s/2, s/2)`` of the
            colour circle; 0 returns the images unchanged.
        seed: op seed.

    Returns:
        float32 [batch, height, width, 3] in [0, 1].
    """
    if strength <= 0:
        return images
    batch = tf.shape(images)[0]

    def draw(low: float, high: float, offset: int) -> tf.Tensor:
        op_seed = None if seed is None else seed + offset
        return tf.random.uniform([batch, 1, 1], low, high, seed=op_seed)

    hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(images), axis=-1)
    hue = tf.math.floormod(hue + draw(-strength / 2, strength / 2, 11), 1.0)
    saturation = tf.clip_by_value(saturation * draw(1 - strength, 1 + strength, 12), 0.0, 1.0)
    value = tf.clip_by_value(value * draw(1 - strength, 1 + strength, 13), 0.0, 1.0)
    images = tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    contrast = draw(1 - strength, 1 + strength, 14)[..., tf.newaxis]
    return tf.clip_by_value((images - mean) * contrast + mean, 0.0, 1.0)
