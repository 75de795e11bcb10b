"""bench/scale.py's pure helpers: the scaled data shape, the growth exponent, the
extrapolation and the attribution of memory samples to components."""

import importlib.util
import math
import os

import pytest

_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "scale.py"
)
_spec = importlib.util.spec_from_file_location("bench_scale", _PATH)
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)


def test_scaled_shape_keeps_the_real_sets_patches_per_patient():
    patients, per_patient = scale.scaled_shape(scale.REAL_IMAGES)
    assert patients == 279
    assert abs(patients * per_patient - scale.REAL_IMAGES) < patients  # rounding only
    assert scale.scaled_shape(50_000) == (50, 1000)
    # small sets keep enough patients for every hash-bucket split
    assert scale.scaled_shape(1000) == (scale.MIN_PATIENTS, 100)


def test_growth_exponent_recovers_power_laws():
    sizes = [1e3, 1e4, 5e4, 2.7e5]
    assert scale.growth_exponent(sizes, [3 * s for s in sizes]) == pytest.approx(1.0)
    assert scale.growth_exponent(sizes, [0.5 * s**2 for s in sizes]) == pytest.approx(2.0)
    assert scale.growth_exponent(sizes, [7.0] * 4) == pytest.approx(0.0, abs=1e-12)
    # a fixed cost flattens the small end: the fit lies between 0 and 1
    assert 0.0 < scale.growth_exponent(sizes, [100 + 0.01 * s for s in sizes]) < 1.0


def test_growth_exponent_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError):
        scale.growth_exponent([1000, 1000], [1.0, 2.0])
    with pytest.raises(ValueError):
        scale.growth_exponent([1000, 2000], [0.0, 2.0])


def test_extrapolate_uses_the_two_largest_sizes():
    # fixed cost at the small end, linear at the large end: the local law predicts linearly
    sizes, values = [100, 10_000, 20_000], [50.0, 100.0, 200.0]
    assert scale.extrapolate(sizes, values, 40_000) == pytest.approx(400.0)
    assert scale.extrapolate([1, 2], [1.0, 4.0], 4) == pytest.approx(16.0)


def test_memory_samples_are_attributed_to_the_component_running_then():
    events = [
        (10.0, "A", "running"),
        (20.0, "A", "finished"),
        (20.5, "B", "running"),
        (30.0, "B", "finished"),
    ]
    windows = scale.stage_windows(events)
    assert windows == {"A": (10.0, 20.0), "B": (20.5, 30.0)}
    samples = [
        (9.0, 100.0),
        (12.0, 300.0),
        (19.0, 250.0),
        (20.2, 240.0),
        (25.0, 900.0),
        (29.0, 400.0),
    ]
    memory = scale.attribute(samples, windows)
    assert memory["A"] == {"peak_rss": 300.0, "added_rss": 200.0}
    assert memory["B"] == {"peak_rss": 900.0, "added_rss": 660.0}
    assert not math.isnan(memory["B"]["peak_rss"])
