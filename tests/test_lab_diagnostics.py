"""Each training diagnostic fires on a model built to fail that way and stays quiet on a
healthy one (small dense models on in-memory data: seconds each)."""

import logging

import numpy as np
import pytest
import tf_keras as keras

from components.trainer import diagnostics

FEATURES = 8


def _blobs(n, seed, noise_labels=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, FEATURES)).astype("float32")
    if not noise_labels:
        x[:, 0] += np.where(y == 1, 1.5, -1.5)
    return x, y


def _mlp(hidden, activation="relu", initializer="glorot_uniform", optimizer=None, inputs=FEATURES):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((inputs,))]
        + [
            keras.layers.Dense(w, activation=activation, kernel_initializer=initializer)
            for w in hidden
        ]
        + [keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(optimizer or keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model


def _fit(model, epochs=4, data=None, val=None, batch=32):
    x, y = data or _blobs(512, 1)
    vx, vy = val or _blobs(256, 2)
    checks = diagnostics.TrainingDiagnostics((vx[:32], vy[:32]))
    model.fit(
        x,
        y,
        validation_data=(vx, vy),
        epochs=epochs,
        batch_size=batch,
        callbacks=[checks],
        verbose=0,
    )
    return checks.report()


def test_healthy_model_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="components.trainer.diagnostics"):
        # enough data and a modest step: still learning at the end, no train/val divergence
        report = _fit(
            _mlp([16, 16], optimizer=keras.optimizers.Adam(2e-3)),
            epochs=4,
            data=_blobs(2048, 1),
            val=_blobs(1024, 2),
        )
    assert report["triggered"] == []
    assert not [r for r in caplog.records if "fired" in r.getMessage()]
    # the numbers are recorded even when quiet
    assert report["rules"]["exploding_gradient"]["global_norm"] > 0
    assert len(report["rules"]["loss_not_decreasing"]["losses"]) == 4


def test_vanishing_gradients_fire_in_a_deep_sigmoid_stack(caplog):
    model = _mlp(
        [16] * 8, activation="sigmoid", initializer=keras.initializers.RandomNormal(stddev=0.01)
    )
    with caplog.at_level(logging.WARNING, logger="components.trainer.diagnostics"):
        report = _fit(model, epochs=1)
    rule = report["rules"]["vanishing_gradient"]
    assert rule["triggered"] and rule["min_mean_abs"] < 1e-7
    assert any("vanishing_gradient fired" in r.getMessage() for r in caplog.records)


def test_exploding_gradients_fire_with_huge_weights():
    model = _mlp([32] * 5, initializer=keras.initializers.RandomNormal(stddev=3.0))
    report = _fit(model, epochs=1)
    assert "exploding_gradient" in report["triggered"]
    rule = report["rules"]["exploding_gradient"]
    assert (
        rule.get("global_norm", float("inf")) == "inf"
        or float(rule.get("global_norm", 1e9)) > 1e3
        or "loss" in rule
    )


def test_poor_initialisation_fires_with_zero_weights():
    report = _fit(_mlp([16, 16], initializer="zeros"), epochs=1)
    rule = report["rules"]["poor_weight_initialization"]
    assert rule["triggered"] and rule["epoch"] is None  # found before the first step
    assert rule["most_zeros"][1] >= 0.99


def test_overfitting_fires_when_memorising_noise():
    train = _blobs(48, 3, noise_labels=True)
    val = _blobs(256, 4, noise_labels=True)
    model = _mlp([256, 256], optimizer=keras.optimizers.Adam(1e-2))
    report = _fit(model, epochs=12, data=train, val=val, batch=16)
    rule = report["rules"]["overfitting"]
    assert rule["triggered"], rule
    assert rule["gaps"][-1] > rule["gaps"][0]


def test_loss_not_decreasing_fires_with_a_zero_learning_rate():
    report = _fit(_mlp([16], optimizer=keras.optimizers.SGD(0.0)), epochs=4)
    rule = report["rules"]["loss_not_decreasing"]
    assert rule["triggered"] and rule["best_recent"] == pytest.approx(rule["best_before"], rel=1e-3)
    assert "vanishing_gradient" not in report["triggered"]


def test_checks_run_under_the_clusters_mirrored_strategy():
    """The cluster's Trainer fits inside MirroredStrategy (one CPU device here, the same code
    path as one GPU): the gradient probe must run in a replica context and agree with the
    undistributed one."""
    import tensorflow as tf

    x, y = _blobs(128, 1)
    plain = _mlp([16])
    plain_checks = diagnostics.TrainingDiagnostics((x[:32], y[:32]))
    plain_checks.set_model(plain)
    expected = plain_checks.gradient_stats()
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        mirrored = _mlp([16])
    checks = diagnostics.TrainingDiagnostics((x[:32], y[:32]))
    mirrored.fit(x, y, epochs=2, batch_size=32, callbacks=[checks], verbose=0)
    report = checks.report()
    assert "exploding_gradient" not in report["triggered"]
    assert len(checks.gradient_log) == 3  # before the first step and after each epoch
    first = checks.gradient_log[0]
    assert first["finite"] and first["global_norm"] > 0
    np.testing.assert_allclose(first["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(first["global_norm"], expected["global_norm"], rtol=1e-4)
    # The probe outside strategy.run (as it was written first) is what failed the cluster's
    # Trainer in on_train_begin: the loss metric's update is refused in cross-replica context.
    features, labels = checks.probe
    with pytest.raises(ValueError, match="SyncOnReadVariable does not support `assign_add`"):
        mirrored.compute_loss(features, labels, mirrored(features, training=False))
