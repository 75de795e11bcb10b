import numpy as np
import pytest
import tf_keras as keras

from breastdx_core import configs
from components.trainer import trainer_module
from components.trainer.sections import TrainerSettings


def _config(**training):
    return TrainerSettings.of(configs.load(env={})).with_training(**training)


def _backbone_trainable(model):
    pool = model.layers.index(model.get_layer("pool"))
    ours = {"backbone_resize", "to_pixels", "backbone_preprocess", "image"}
    return [layer.trainable for layer in model.layers[:pool] if layer.name not in ours]


def test_random_init_vgg16_outputs_class_probabilities():
    model = trainer_module.build_model(_config())
    assert model.output_shape == (None, 2)
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
    assert all(_backbone_trainable(model))  # nothing pretrained to keep frozen
    head = [
        layer.__class__.__name__
        for layer in model.layers[model.layers.index(model.get_layer("pool")) :]
    ]
    assert head == [
        "GlobalAveragePooling2D",
        "Dense",
        "Dropout",
        "Dense",
        "Dropout",
        "BatchNormalization",
        "Dense",
    ]
    probs = model.predict(np.random.rand(2, 64, 64, 3).astype("float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_pretrained_weights_file_unfreezes_only_the_last_four(tmp_path):
    weights = str(tmp_path / "vgg16_notop.h5")
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3)).save_weights(
        weights
    )
    model = trainer_module.build_model(_config(weights=weights))
    # unfreeze_last counts layers with weights (VGG16: convolutions; pooling has none)
    trainable = [
        layer.name for layer in model.layers if layer.trainable and layer.name.startswith("block")
    ]
    assert trainable == ["block4_conv3", "block5_conv1", "block5_conv2", "block5_conv3"]
    assert model.get_layer("backbone_preprocess") is not None  # ImageNet normalisation in the model


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trainer_module.build_model(_config(weights=str(tmp_path / "nope.h5")))


def test_small_inputs_are_resized_for_backbones_that_need_more():
    model = trainer_module.build_model(_config(backbone="xception"))
    assert model.get_layer("backbone_resize").output_shape[1:3] == (71, 71)


def test_class_weights_balance_the_classes():
    weights = trainer_module.class_weights(np.array([300, 100]))
    assert weights[0] * 300 == pytest.approx(weights[1] * 100)
    assert (weights[0] * 300 + weights[1] * 100) / 400 == pytest.approx(1.0)


def test_distribution_strategy_by_name():
    import tensorflow as tf

    assert isinstance(
        trainer_module.distribution_strategy("mirrored"), tf.distribute.MirroredStrategy
    )
    assert trainer_module.distribution_strategy(None) is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="distribution_strategy must be one of"):
        trainer_module.distribution_strategy("horovod")
