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
    with pytest.raises(cv.CvError, match="4 folds cannot be patient-disjoint with 3 patients: use --folds 3"):
        cv.assign_folds(labels, groups, 4, seed=0)


def test_one_patient_holding_a_class_is_reported():
    labels, groups = _images({"a": (5, 0), "b": (5, 0), "c": (2, 7)})
    notes = cv.data_warnings(cv._patient_classes(labels, groups), ("0", "1"))
    assert len(notes) == 1 and "class '1': all 7 images come from one patient (c)" in notes[0]


def test_eval_patients_hold_both_classes_when_possible():
    labels, groups = _images({"a": (5, 0), "b": (5, 0), "c": (0, 5), "d": (4, 4), "e": (5, 0), "f": (0, 3)})
    classes = cv._patient_classes(labels, groups)
    pick = cv.eval_patients(sorted(classes), classes, 0.34, seed=1)
    assert len(pick) == 2
    assert sum(classes[p] for p in pick).all() and sum(classes[p] for p in classes if p not in pick).all()


def test_metrics_reuse_the_project_metrics_and_bootstrap_patients():
    rng = np.random.default_rng(0)
    labels, groups = _images({f"p{i}": (20, 20) for i in range(6)})
    scores = np.clip(labels * 0.3 + rng.random(len(labels)) * 0.7, 0, 1)
    result = cv.metrics_with_ci(labels, scores, groups, resamples=50, seed=0)
    sens, spec = result["sensitivity"]["value"], result["specificity"]["value"]
    assert result["balanced_accuracy"]["value"] == pytest.approx((sens + spec) / 2)
    assert result["auc"]["ci95"]["low"] <= result["auc"]["value"] <= result["auc"]["ci95"]["high"]


@pytest.mark.e2e
def test_two_folds_through_run_fn(idc_run, tmp_path):
    """Per-patient regrouping of the session run's data stages (tests/conftest.py `idc_run`),
    two models through run_fn, held-out scores; the table, JSON and ROC plot."""
    run_config, _ = idc_run
    config = configs.load(env={}, workdir=run_config.workdir, seed=run_config.seed, train_steps=2, eval_steps=0,
                          epochs=1, batch_size=8, backbone="resnet50", stain_jitter=0.05, bootstrap_resamples=20)
    result = cv.cross_validate(config, folds=2, out_dir=str(tmp_path / "cv"))
    folds = result["folds"]
    assert len(folds) == 2
    tested = [p for row in folds for p in row["test_patients"]]
    assert sorted(tested) == sorted(set(tested)) and len(tested) == result["meta"]["patients"]  # each once
    for row in folds:
        assert not set(row["test_patients"]) & set(row["train_patients"] + row["eval_patients"])
        assert row["budget"]["images_seen"] == 2 * 8 and row["calibration"]["method"] == "temperature"
        assert len(row["scores"]) == row["n_test_images"] > 0
    images = result["meta"]["images"]  # every ingested image, each scored once
    assert result["pooled"]["n_images"] == images == sum(row["n_test_images"] for row in folds)
    assert set(result["pooled"]["metrics"]) == set(cv.METRICS)
    with open(tmp_path / "cv" / "cv.json") as handle:
        assert json.load(handle)["meta"]["synthetic_data"] is True
    assert f"| pooled | {len(tested)} patients | {images} |" in open(tmp_path / "cv" / "cv.md").read()
    assert os.path.getsize(tmp_path / "cv" / "roc.png") > 1000
