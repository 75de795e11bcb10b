"""The Trainer module's lab additions: the CNN-LSTM hybrid, the optimizer choice, the
diagnostics in the card, and seeded reproducibility on CPU."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from breastdx_core import configs
from components.trainer import data, trainer_module
from components.trainer.sections import TrainerSettings

# Two trainings with the same seed and data agree to this (CPU, float32).
REPRODUCIBILITY_TOLERANCE = 1e-5


def _config(model_size=None, seed=None, **training):
    settings = TrainerSettings.of(configs.load(env={})).with_training(**training)
    task = {k: v for k, v in (("model_size", model_size), ("seed", seed)) if v is not None}
    return settings.with_task(**task)


def test_cnn_lstm_reads_pooled_features_as_a_sequence():
    model = trainer_module.build_model(_config(backbone="cnn_lstm", lstm_steps=8, lstm_units=16))
    assert "cnn_lstm" in configs.BACKBONES and "cnn_lstm" in trainer_module.ARCHITECTURES
    assert model.get_layer("to_sequence").output_shape == (None, 8, 64)  # VGG16's 512 features
    assert model.get_layer("lstm").output_shape == (None, 16)
    probs = model.predict(np.random.rand(2, 64, 64, 3).astype("float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="must divide"):
        trainer_module.build_model(_config(backbone="cnn_lstm", lstm_steps=7))


def test_optimizer_is_a_setting():
    model = trainer_module.build_model(
        _config(optimizer="sgd", learning_rate=0.01, model_size=(32, 32))
    )
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        trainer_module.build_model(_config(optimizer="lbfgs", model_size=(32, 32)))


def _train_once(seed):
    config = _config(model_size=(32, 32), epochs=2, seed=seed, batch_size=8)
    keras.utils.set_random_seed(seed)  # as run_fn does first
    rng = np.random.default_rng(0)
    images = rng.random((32, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 2, 32)
    augment = data._augmenter(seed)
    train = (
        tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
        .shuffle(32, seed=seed)
        .batch(8)
        .map(lambda f, y: ({"image": augment(f["image"], training=True)}, y))
        .repeat()
    )
    evaluation = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(8).repeat()
    model = trainer_module.build_model(config)
    history, report, _ = trainer_module.fit_model(
        model, train, evaluation, config, train_steps=4, eval_steps=2
    )
    return history, report, model.predict(images[:8], verbose=0)


def test_same_seed_same_metrics_on_cpu():
    first, report, predictions = _train_once(11)
    second, _, predictions_again = _train_once(11)
    assert set(first) >= {"loss", "val_loss", "sparse_categorical_accuracy"}
    for key in first:
        np.testing.assert_allclose(
            first[key], second[key], atol=REPRODUCIBILITY_TOLERANCE, err_msg=key
        )
    np.testing.assert_allclose(predictions, predictions_again, atol=REPRODUCIBILITY_TOLERANCE)
    # the diagnostics ran during the same training and report every rule with numbers
    assert set(report["rules"]) == {
        "vanishing_gradient",
        "exploding_gradient",
        "poor_weight_initialization",
        "overfitting",
        "loss_not_decreasing",
    }
    assert report["gradients"][0]["epoch"] is None and report["gradients"][0]["global_norm"] > 0
