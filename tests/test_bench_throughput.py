"""bench/throughput.py's statistics: the mean over folds of the paired AUC difference and
its fold-stratified patient bootstrap (the 224-vs-64 px comparison on real tissue)."""

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "throughput.py"
)
_spec = importlib.util.spec_from_file_location("bench_throughput", _PATH)
throughput = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(throughput)


def _fold(rng, patients, per_patient, a_quality, b_quality, offset):
    """A fold's test patches: labels, two models' scores (signal weights a_quality and
    b_quality over noise) and patient ids; ``offset`` shifts both models' score scale."""
    labels = rng.integers(0, 2, patients * per_patient)
    labels[:2] = [0, 1]  # both classes in every fold
    noise_a, noise_b = rng.normal(size=labels.size), rng.normal(size=labels.size)
    groups = np.repeat([f"p{i}" for i in range(patients)], per_patient)
    return {
        "labels": labels,
        "a": a_quality * labels + noise_a + offset,
        "b": b_quality * labels + noise_b - offset,
        "groups": groups,
    }


def test_identical_models_differ_by_nothing():
    rng = np.random.default_rng(0)
    folds = [_fold(rng, 4, 40, 1.0, 1.0, offset) for offset in (0.0, 5.0, -3.0)]
    for f in folds:
        f["b"] = f["a"].copy()
    m = throughput.mean_fold_difference(folds, resamples=200, seed=1)
    assert m["difference"] == 0.0
    assert m["low"] == 0.0 and m["high"] == 0.0
    assert m["resamples"] == 200


def test_a_clearly_better_model_is_found_better_whatever_each_folds_score_scale():
    rng = np.random.default_rng(1)
    # each fold's models score on a scale of their own (offsets): pooling would mix them,
    # the mean of per-fold differences must not care
    folds = [_fold(rng, 5, 60, 3.0, 0.3, offset) for offset in (0.0, 10.0, -10.0)]
    m = throughput.mean_fold_difference(folds, resamples=500, seed=2)
    assert m["difference"] > 0.3
    assert 0 < m["low"] <= m["difference"] <= m["high"]
    shifted = [
        dict(f, a=f["a"] + 100.0, b=f["b"] * 0.01) for f in folds
    ]  # monotone: AUCs unchanged
    assert throughput.mean_fold_difference(shifted, resamples=500, seed=2) == pytest.approx(m)


def test_the_ci_widens_with_fewer_patients():
    rng = np.random.default_rng(3)
    few = [_fold(rng, 3, 20, 1.0, 0.8, 0.0) for _ in range(3)]
    many = [_fold(rng, 30, 20, 1.0, 0.8, 0.0) for _ in range(3)]
    width = lambda m: m["high"] - m["low"]  # noqa: E731
    assert width(throughput.mean_fold_difference(few, 400, 4)) > width(
        throughput.mean_fold_difference(many, 400, 4)
    )
