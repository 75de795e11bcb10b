"""The Trainer's real-data parts: the data-sized budget, HED stain jitter, temperature scaling."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from breastdx_core import configs
from components.trainer import calibration, stain, training
from components.trainer.sections import TrainerSettings


# --- budget -----------------------------------------------------------------------------
def test_budget_follows_the_data_unless_set(tmp_path):
    real = configs.load(env={}, workdir=str(tmp_path), data_root=str(tmp_path / "real"))
    demo = configs.load(env={}, workdir=str(tmp_path))
    assert (real.training.train_steps, real.training.eval_steps) == (
        0,
        0,
    ) and real.training.epochs > 1
    assert (demo.training.train_steps, demo.training.eval_steps, demo.training.epochs) == (
        24,
        8,
        4,
    )  # the synthetic preset
    assert configs.load(env={}, workdir=str(tmp_path), task="busi").training.train_steps == 120
    assert (
        configs.load(
            env={"BREASTDX_TRAIN_STEPS": "50"}, data_root=str(tmp_path)
        ).training.train_steps
        == 50
    )
    settings = TrainerSettings.of(real)
    by_data = training.plan_budget(
        settings.with_training(epochs=3, batch_size=32), None, None, train_images=100
    )
    assert by_data["steps_per_epoch"] == 4 and by_data["planned_images"] == 384
    assert by_data["validation_steps"] is None and "whole eval split" in by_data["validation"]
    by_steps = training.plan_budget(settings.with_training(epochs=4), 24, 8, train_images=100)
    assert by_steps["steps_per_epoch"] == 6 and by_steps["basis"] == "steps"
    with pytest.raises(ValueError, match="no training budget"):
        training.plan_budget(settings, None, None, train_images=None)


def _tiny_model():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_wall_time_budget_stops_training_and_counts_images():
    images = np.random.default_rng(0).random((64, 8, 8, 3)).astype("float32")
    labels = np.arange(64) % 2
    train = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(16).repeat()
    whole_eval = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(
        16
    )  # finite: whole split
    config = TrainerSettings.of(configs.load(env={})).with_training(
        epochs=5, batch_size=16, max_train_minutes=1e-9, weights=None
    )
    history, report, _ = training.fit_model(
        _tiny_model(), train, whole_eval, config, None, None, train_images=64
    )
    budget = report["budget"]
    assert budget["stopped_by"] == "wall time" and budget["epochs_trained"] == 1
    assert (
        budget["steps_trained"] == 1
        and budget["images_seen"] == 16
        and budget["planned_images"] == 320
    )
    assert len(history["val_loss"]) == 1  # validated on the finite eval split


def test_fine_tuning_budget_states_the_whole_wall_time_budget():
    """Head and fine-tuning phases each get their share of max_train_minutes; the card's
    budget says the minutes the user set (the real-data run's card said 7 of 14)."""
    images = np.random.default_rng(0).random((64, 8, 8, 3)).astype("float32")
    labels = np.arange(64) % 2
    train = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(16).repeat()
    whole_eval = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(16)
    config = TrainerSettings.of(configs.load(env={})).with_training(
        epochs=2,
        batch_size=16,
        max_train_minutes=14.0,
        weights="imagenet",
        fine_tune_head_fraction=0.5,
    )
    _, report, _ = training.train_model(
        _tiny_model(), train, whole_eval, config, None, None, train_images=64
    )
    budget = report["budget"]
    assert budget["max_train_minutes"] == 14.0 and budget["max_train_minutes_per_phase"] == [
        7.0,
        7.0,
    ]
    assert (
        budget["epochs_trained"] == 2
        and budget["images_seen"] == 2 * 4 * 16
        and budget["stopped_by"] == "budget"
    )


# --- stain jitter -------------------------------------------------------------------------
def test_colour_deconvolution_matches_the_published_stain_vectors():
    np.testing.assert_allclose(stain.HED_FROM_RGB @ stain.RGB_FROM_HED, np.eye(3), atol=1e-5)
    # a pixel of pure haematoxylin at optical density 0.8 per unit vector
    pixel = np.exp(-0.8 * stain.RGB_FROM_HED[0]).astype("float32")
    np.testing.assert_allclose(
        stain.rgb_to_hed(tf.constant(pixel)).numpy(), [0.8, 0.0, 0.0], atol=1e-4
    )


def test_hed_jitter_restains_within_range_and_zero_is_identity():
    images = tf.constant(
        np.random.default_rng(1).uniform(0.2, 0.95, (4, 16, 16, 3)).astype("float32")
    )
    np.testing.assert_allclose(
        stain.hed_to_rgb(stain.rgb_to_hed(images)).numpy(), images.numpy(), atol=1e-4
    )
    assert stain.hed_jitter(images, 0.0) is images
    jittered = stain.hed_jitter(images, 0.05, seed=3).numpy()
    assert jittered.shape == images.shape and jittered.min() >= 0 and jittered.max() <= 1
    change = np.abs(jittered - images.numpy()).mean(axis=(1, 2, 3))
    assert (change > 1e-3).all() and (change < 0.2).all()  # every image re-stained, none destroyed
    # one draw per image: the colour shift is the same over an image's pixels of one colour
    flat = tf.fill((1, 4, 4, 3), 0.6)
    assert np.ptp(stain.hed_jitter(flat, 0.05, seed=4).numpy().reshape(-1, 3), axis=0).max() < 1e-5


def test_color_jitter_draws_per_image_within_its_strength_and_zero_is_identity():
    rng = np.random.default_rng(2)
    images = tf.constant(rng.uniform(0.2, 0.8, (64, 8, 8, 3)).astype("float32"))
    assert stain.color_jitter(images, 0.0) is images
    jittered = stain.color_jitter(images, 0.1, seed=5).numpy()
    assert jittered.shape == images.shape and jittered.min() >= 0 and jittered.max() <= 1
    change = np.abs(jittered - images.numpy()).mean(axis=(1, 2, 3))
    assert (change > 1e-4).all() and (change < 0.15).all()
    assert np.ptp(change) > 1e-3  # one draw per image, not one for the batch
    # brightness: a grey image's value is scaled by at most 1 +- s (contrast leaves a flat
    # image as it is; grey has no hue or saturation to turn)
    grey = tf.fill((256, 2, 2, 3), 0.5)
    values = stain.color_jitter(grey, 0.1, seed=6).numpy()[:, 0, 0, 0]
    assert values.min() >= 0.45 - 1e-6 and values.max() <= 0.55 + 1e-6
    assert values.min() < 0.46 and values.max() > 0.54  # and the whole range is used


def test_train_augmentation_follows_the_settings():
    from breastdx_core import configs
    from components.trainer import data
    from components.trainer.sections import TrainerSettings

    base = TrainerSettings.of(configs.load(env={}, task="idc", data_root="/nonexistent"))
    off = base.with_training(augment=False, stain_jitter=0.0, color_jitter=0.0)
    assert data.train_augmentation(off) is None
    images = tf.fill((4, 8, 8, 3), 0.5) + tf.random.uniform((4, 8, 8, 3), 0, 0.1, seed=1)
    colour_only = data.train_augmentation(off.with_training(color_jitter=0.2))
    assert not np.allclose(colour_only(images).numpy(), images.numpy())


# --- temperature scaling ------------------------------------------------------------------
def _overconfident(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logit = (labels * 2 - 1) * 1.0 + rng.normal(0, 1.5, n)  # true log-odds...
    sharp = 4.0 * logit  # ...reported 4x too sharp
    p1 = 1 / (1 + np.exp(-sharp))
    return np.stack([1 - p1, p1], axis=1), labels


def test_temperature_fit_recovers_the_overconfidence_and_lowers_ece():
    from components.evaluation.statistics import calibration as reliability

    probabilities, labels = _overconfident()
    temperature = calibration.fit_temperature(probabilities, labels)
    assert 3.0 < temperature < 5.0
    after = calibration.scale(probabilities, temperature)
    assert (
        reliability(labels, after[:, 1])["ece"]
        < reliability(labels, probabilities[:, 1])["ece"] / 3
    )
    np.testing.assert_allclose(
        calibration.uncalibrate(after, temperature), probabilities, atol=1e-5
    )
    np.testing.assert_array_equal(
        np.argsort(after[:, 1]), np.argsort(probabilities[:, 1])
    )  # ranking kept


def test_calibrated_model_applies_the_temperature_and_keeps_the_layers():
    model = _tiny_model()
    images = np.random.default_rng(2).random((32, 8, 8, 3)).astype("float32")
    labels = np.arange(32) % 2
    dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(8)
    wrapped, field = calibration.calibrate(model, dataset, positive_index=1)
    raw = model.predict(images, verbose=0)
    np.testing.assert_allclose(
        wrapped.predict(images, verbose=0), calibration.scale(raw, field["temperature"]), atol=1e-5
    )
    assert (
        wrapped.get_layer("pool") is model.get_layer("pool")
        and wrapped.count_params() == model.count_params()
    )
    assert (
        field["n"] == 32 and field["fitted_on"] == "eval" and len(field["reliability_after"]) == 10
    )
    assert field["nll_after"] <= field["nll_before"] + 1e-9


def test_evaluation_report_shows_ece_before_and_after_scaling(tmp_path):
    from components.evaluation.statistics import calibration as reliability
    from lab import evaluation_report as er

    probabilities, labels = _overconfident(600, seed=5)
    temperature = calibration.fit_temperature(probabilities, labels)
    served = calibration.scale(probabilities, temperature)[:, 1]  # what the exported model returns
    groups = np.repeat(np.arange(6).astype(str), 100)
    card = {
        "class_names": ["0", "1"],
        "calibration": {
            "method": "temperature",
            "temperature": temperature,
            "fitted_on": "eval",
            "n": 600,
            "ece_before": 0.2,
            "ece_after": 0.02,
        },
    }
    report = er.build_report(
        (labels, served, groups), (labels, served, groups), resamples=20, card=card
    )
    scaled = report["temperature_scaling"]
    # the report inverts the scaling exactly: its "before" is the raw model's reliability
    assert scaled["before"]["ece"] == pytest.approx(
        reliability(labels, probabilities[:, 1])["ece"], abs=1e-6
    )
    assert scaled["before"]["ece"] > 3 * report["calibration"]["ece"]
    page = open(er.write_report(str(tmp_path / "1"), report)["html"]).read()
    assert f"Temperature scaling (T = {temperature:.3f}" in page and "ECE on eval 0.200" in page


def test_update_card_adds_fields_through_the_cards_module(tmp_path):
    from breastdx_core import model_card

    path = model_card.save(model_card.path_in(str(tmp_path)), {"model_name": "m"})
    calibration.update_card(str(tmp_path), {"calibration": {"ece_after": float("nan")}})
    assert model_card.load(path) == {"model_name": "m", "calibration": {"ece_after": None}}
