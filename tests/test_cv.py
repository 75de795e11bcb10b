"""Patient-level cross-validation (lab/cv.py): folds, warnings, and one real
two-fold run through the Trainer module on a tiny synthetic set."""

import json
import os

import numpy as np
import pytest

from breastdx_core import configs
from lab import cv


def _images(patients):
    """labels, groups for {patient: (negatives, positives)}."""
    labels, groups = [], []
    for patient, (neg, pos) in patients.items():
        labels += [0] * neg + [1] * pos
        groups += [patient] * (neg + pos)
    return np.asarray(labels), np.asarray(groups)


def test_folds_are_patient_disjoint_and_cover_every_patient():
    labels, groups = _images({f"p{i}": (10 + i, 3 + (i % 4) * 5) for i in range(13)})
    folds = cv.assign_folds(labels, groups, 4, seed=3)
    flat = [p for fold in folds for p in fold]
    assert len(folds) == 4 and sorted(flat) == sorted(set(groups)) and len(flat) == len(set(flat))
    assert cv.assign_folds(labels, groups, 4, seed=3) == folds  # seeded


def test_too_many_folds_is_a_clear_error():
    labels, groups = _images({"a": (5, 5), "b": (5, 5), "c": (5, 0)})
    with pytest.raises(
        cv.CvError, match="4 folds cannot be patient-disjoint with 3 patients: use --folds 3"
    ):
        cv.assign_folds(labels, groups, 4, seed=0)


def test_one_patient_holding_a_class_is_reported():
    labels, groups = _images({"a": (5, 0), "b": (5, 0), "c": (2, 7)})
    notes = cv.data_warnings(cv._patient_classes(labels, groups), ("0", "1"))
    assert len(notes) == 1 and "class '1': all 7 images come from one patient (c)" in notes[0]


def test_eval_patients_hold_both_classes_when_possible():
    labels, groups = _images(
        {"a": (5, 0), "b": (5, 0), "c": (0, 5), "d": (4, 4), "e": (5, 0), "f": (0, 3)}
    )
    classes = cv._patient_classes(labels, groups)
    pick = cv.eval_patients(sorted(classes), classes, 0.34, seed=1)
    assert len(pick) == 2
    assert (
        sum(classes[p] for p in pick).all()
        and sum(classes[p] for p in classes if p not in pick).all()
    )


def test_metrics_reuse_the_project_metrics_and_bootstrap_patients():
    rng = np.random.default_rng(0)
    labels, groups = _images({f"p{i}": (20, 20) for i in range(6)})
    scores = np.clip(labels * 0.3 + rng.random(len(labels)) * 0.7, 0, 1)
    result = cv.metrics_with_ci(labels, scores, groups, resamples=50, seed=0)
    sens, spec = result["sensitivity"]["value"], result["specificity"]["value"]
    assert result["balanced_accuracy"]["value"] == pytest.approx((sens + spec) / 2)
    assert result["auc"]["ci95"]["low"] <= result["auc"]["value"] <= result["auc"]["ci95"]["high"]


def test_threshold_rules_pick_the_eval_optimum():
    # eval scores: 4 negatives, 4 positives; 0.5 calls two negatives positive (F1 0.8).
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9])
    assert cv.choose_threshold(labels, scores, "max_f1") == pytest.approx(0.65)  # perfect split
    assert cv.choose_threshold(labels, scores, "max_balanced_accuracy") == pytest.approx(0.65)
    assert cv.choose_threshold(labels, scores, "sensitivity_0.95") == pytest.approx(
        0.65
    )  # every positive kept
    # F1 and balanced accuracy disagree: 4 positives among 26, one scored below two negatives.
    labels = np.array([1, 1, 1, 1, 0, 0] + [0] * 20)
    scores = np.array([0.9, 0.9, 0.9, 0.3, 0.4, 0.35] + [0.1] * 20)
    assert cv.choose_threshold(labels, scores, "max_balanced_accuracy") == pytest.approx(
        0.3
    )  # 0.955 vs 0.875
    assert cv.choose_threshold(labels, scores, "max_f1") == pytest.approx(0.9)  # F1 0.857 vs 0.8
    assert cv.choose_threshold(labels, scores, "sensitivity_0.95") == pytest.approx(0.3)
    # ties: the candidate nearest 0.5; one class only: the default threshold
    assert cv.choose_threshold(np.array([0, 1]), np.array([0.2, 0.45]), "max_f1") == pytest.approx(
        0.45
    )
    assert cv.choose_threshold(np.array([1, 1]), np.array([0.2, 0.3]), "max_f1") == cv.THRESHOLD
    with pytest.raises(ValueError, match="unknown operating rule"):
        cv.choose_threshold(labels, scores, "max_auc")


def test_pooled_operating_metrics_call_each_fold_at_its_own_threshold():
    # Fold 0's scores run low, fold 1's high: one threshold cannot serve both, each fold's own does.
    rows = [
        {
            "labels": [0, 0, 1, 1],
            "scores": [0.05, 0.1, 0.3, 0.35],
            "groups": ["a", "a", "b", "b"],
            "operating": {"max_f1": {"threshold": 0.3}},
        },
        {
            "labels": [0, 0, 1, 1],
            "scores": [0.6, 0.7, 0.9, 0.95],
            "groups": ["c", "c", "d", "d"],
            "operating": {"max_f1": {"threshold": 0.9}},
        },
    ]
    at_rule = cv.operating_metrics(rows, "max_f1", resamples=20, seed=0)
    assert "auc" not in at_rule
    assert at_rule["f1"]["value"] == 1.0 and at_rule["balanced_accuracy"]["value"] == 1.0
    y, s, _, g = cv.decisions_at(rows, "max_f1")
    fixed = cv.metrics_with_ci(y, s, g, resamples=20, seed=0)  # 0.5 for both folds
    assert fixed["sensitivity"]["value"] == 0.5 and fixed["specificity"]["value"] == 0.5


def test_dihedral_records_are_the_exported_models_eight_orientations():
    import tensorflow as tf

    from components.trainer.export import dihedral_views

    image = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)  # every pixel distinct
    record = tf.train.Example()
    record.features.feature["image_raw"].bytes_list.value.append(tf.io.encode_png(image).numpy())
    record.features.feature["label"].int64_list.value.append(1)
    views = cv.dihedral_records([record.SerializeToString()] * 2)
    assert len(views) == 16
    decoded = [
        tf.io.decode_png(
            tf.train.Example.FromString(v).features.feature["image_raw"].bytes_list.value[0]
        ).numpy()
        for v in views
    ]
    expected = [v[0].numpy() for v in dihedral_views(tf.constant(image[np.newaxis]))]
    assert all(np.array_equal(d, e) for d, e in zip(decoded, expected + expected))
    assert len({d.tobytes() for d in decoded}) == 8  # eight distinct orientations


def test_tta_scores_pool_beside_the_plain_ones_with_their_own_thresholds():
    def row(fold, plain, averaged, threshold):
        return {
            "fold": fold,
            "labels": [0, 0, 1, 1],
            "scores": plain,
            "groups": [f"n{fold}", f"n{fold}", f"p{fold}", f"p{fold}"],
            "operating": {rule: {"threshold": 0.5} for rule in cv.OPERATING_RULES},
            "tta": {
                "scores": averaged,
                "operating": {rule: {"threshold": threshold} for rule in cv.OPERATING_RULES},
                "slide_context": None,
                "wall_seconds": 3.0,
            },
        }

    rows = [
        row(0, [0.6, 0.2, 0.4, 0.9], [0.3, 0.2, 0.4, 0.9], 0.35),
        row(1, [0.1, 0.7, 0.8, 0.3], [0.1, 0.2, 0.8, 0.7], 0.6),
    ]
    plain = cv.pooled(rows, resamples=20, seed=0)
    tta = cv.pooled_tta(rows, resamples=20, seed=0)
    assert plain["metrics"]["balanced_accuracy"]["value"] == 0.5
    assert tta["metrics"]["auc"]["value"] == 1.0 and tta["n_images"] == 8
    assert tta["operating"]["max_f1"]["thresholds"] == [0.35, 0.6]
    assert tta["operating"]["max_f1"]["metrics"]["f1"]["value"] == 1.0
    assert tta["slide_context"] is None and tta["wall_seconds"] == [3.0, 3.0]
    assert cv.pooled_tta([{**rows[0], "tta": None}, rows[1]], resamples=20, seed=0) is None
    lines = "\n".join(cv._operating_lines(tta, 0.5))
    assert "| eval max F1 | 0.350, 0.600 | " in lines and "| fixed 0.5 | 0.5, 0.5 |" in lines


def test_markdown_lists_the_eval_chosen_thresholds():
    entry = {"value": 0.8, "ci95": {"low": 0.7, "high": 0.9}}
    at = {m: entry for m in cv.METRICS}
    result = {
        "meta": {
            "folds": 2,
            "patients": 4,
            "images": 8,
            "positive_images": 4,
            "backbone": "b",
            "weights": "w",
            "stain_jitter": 0,
            "epochs": 1,
            "train_steps": 0,
            "threshold": 0.5,
            "bootstrap_resamples": 20,
            "research_only": "Research use only.",
            "seconds": 1,
            "synthetic_data": False,
        },
        "warnings": [],
        "folds": [],
        "pooled": {
            "n_patients": 4,
            "n_images": 8,
            "metrics": at,
            "operating": {"max_f1": {"thresholds": [0.31, 0.72], "metrics": at}},
        },
    }
    text = cv.render_markdown(result)
    assert "| eval max F1 | 0.310, 0.720 | 0.800 [0.700, 0.900] |" in text


@pytest.mark.e2e
def test_two_folds_through_run_fn(idc_run, tmp_path):
    """Per-patient regrouping of the session run's data stages (tests/conftest.py `idc_run`),
    two models through run_fn, held-out scores; the table, JSON and ROC plot. Without TTA
    (8x the scoring of every eval and test image): the next test proves it on a few."""
    run_config, _ = idc_run
    # EfficientNet-Lite0 from random weights: the lightest registry backbone (a quarter of
    # ResNet50's CPU per image scored; cv scores every eval and test image of each fold).
    config = configs.load(
        env={},
        workdir=run_config.workdir,
        seed=run_config.seed,
        train_steps=2,
        eval_steps=0,
        epochs=1,
        batch_size=8,
        backbone="efficientnet_lite0",
        stain_jitter=0.05,
        bootstrap_resamples=20,
    )
    result = cv.cross_validate(config, folds=2, out_dir=str(tmp_path / "cv"))
    folds = result["folds"]
    assert len(folds) == 2
    tested = [p for row in folds for p in row["test_patients"]]
    assert (
        sorted(tested) == sorted(set(tested)) and len(tested) == result["meta"]["patients"]
    )  # each once
    for row in folds:
        assert not set(row["test_patients"]) & set(row["train_patients"] + row["eval_patients"])
        assert (
            row["budget"]["images_seen"] == 2 * 8 and row["calibration"]["method"] == "temperature"
        )
        assert len(row["scores"]) == row["n_test_images"] > 0
    images = result["meta"]["images"]  # every ingested image, each scored once
    assert result["pooled"]["n_images"] == images == sum(row["n_test_images"] for row in folds)
    assert set(result["pooled"]["metrics"]) == set(cv.METRICS)
    for (
        row
    ) in folds:  # thresholds chosen on the fold's eval patients, who are not its test patients
        assert row["n_eval_images"] > 0 and set(row["operating"]) == set(cv.OPERATING_RULES)
    assert set(result["pooled"]["operating"]) == set(cv.OPERATING_RULES)
    # The synthetic names carry x/y: slide-context figures beside the per-patch ones, the
    # width chosen on each fold's eval patients.
    context = result["slide_context"]
    assert (
        context is not None
        and len(context["sigmas"]) == 2
        and set(context["metrics"]) == set(cv.METRICS)
    )
    assert "Slide context" in open(tmp_path / "cv" / "cv.md").read()
    with open(tmp_path / "cv" / "cv.json") as handle:
        assert json.load(handle)["meta"]["synthetic_data"] is True
    assert (
        f"| pooled | {len(tested)} patients | {images} |" in open(tmp_path / "cv" / "cv.md").read()
    )
    assert os.path.getsize(tmp_path / "cv" / "roc.png") > 1000


@pytest.mark.e2e
def test_tta_scores_average_the_eight_orientations(idc_run, tmp_path):
    """Test-time augmentation as cv scores with it, on four test images: `score_split` (what
    each fold scores with) reads the ``serving_examples`` signature of a model exported with
    the fold's trainer settings (``tta`` on) and gets the model's probabilities averaged over
    the 8 dihedral orientations, not the upright image's. VGG16 (the default backbone):
    the fewest layers to trace into the exported signatures."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras as keras

    from breastdx_core import contract
    from components.evaluation.scoring import score_split
    from components.trainer import export
    from components.trainer import model as model_lib
    from components.trainer.sections import TrainerSettings
    from lab import compare

    run_config, _ = idc_run
    config = configs.load(env={}, workdir=run_config.workdir, seed=run_config.seed, tta=True)
    # what cv.train_fold hands run_fn, seed aside
    settings = TrainerSettings.from_custom_config(config.custom_config("training"))
    assert settings.training.tta is True
    data = compare.find_run_data(config)
    keras.utils.set_random_seed(config.seed)  # as run_fn does first: the same weights each run
    model = model_lib.build_model(settings)
    model_dir = str(tmp_path / "tta")
    export.export_serving_model(
        model, tft.TFTransformOutput(data.transform_graph_uri), model_dir, settings
    )
    scored = score_split(model_dir, data.examples.uri, "test", limit=4)

    files = sorted(tf.io.gfile.glob(f"{data.examples.uri}/Split-test/*"))  # score_split's order
    records = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4)))
    images = tf.saved_model.load(model_dir).signatures[contract.SIGNATURE_TRANSFORM](
        **{contract.SERVING_INPUT_EXAMPLES: records}
    )[contract.TRANSFORMED_IMAGE_KEY]
    views = [model(view, training=False).numpy() for view in export.dihedral_views(images)]
    averaged = np.mean(views, axis=0)
    assert scored.probabilities.shape == (4, 2)
    assert np.abs(scored.probabilities - averaged).max() < 1e-6
    assert np.abs(views[0] - averaged).max() > 4e-6  # the upright image alone scores otherwise
