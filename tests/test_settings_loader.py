"""One loader for every settings dataclass (breastdx_core/loader.py): the pipeline's and
the cluster's settings both go through it, with the same reading of a variable."""

import dataclasses

import pytest

from breastdx_core import cluster_configs, configs, loader


@dataclasses.dataclass
class Toy:
    steps: int = 3
    rate: float = 0.5
    on: bool = False
    sizes: tuple = (16, 32)
    name: str = "a"


def test_variables_then_overrides_over_the_defaults():
    env = {"BREASTDX_STEPS": "7", "BREASTDX_ON": "yes", "BREASTDX_SIZES": "8, 4", "OTHER": "x"}
    values = loader.load(Toy, env, {"rate": 0.1, "name": None})
    assert Toy(**values) == Toy(steps=7, rate=0.1, on=True, sizes=(8, 4), name="a")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BREASTDX_STEPS": "many"}, "BREASTDX_STEPS must be a number, got 'many'"),
        ({"BREASTDX_ON": "maybe"}, "BREASTDX_ON must be true or false, got 'maybe'"),
        (
            {"BREASTDX_SIZES": "8,big"},
            "BREASTDX_SIZES must be comma-separated int values, got '8,big'",
        ),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_must_be(env, message):
    with pytest.raises(ValueError, match=message):
        loader.load(Toy, env, {})


def test_strict_owns_the_prefix_and_a_lax_load_reads_only_its_fields():
    env = {"BREASTDX_NOPE": "1", "BREASTDX_STEPS": ""}
    assert loader.load(Toy, env, {}) == {}  # lax: not its variable; empty means "not set"
    with pytest.raises(ValueError, match="unknown setting BREASTDX_NOPE"):
        loader.load(Toy, env, {}, strict=True)
    assert loader.load(
        Toy, env, {}, strict=True, skip={"BREASTDX_NOPE"}, convert=lambda f, raw: raw or 9
    ) == {"steps": 9}
    with pytest.raises(KeyError, match="unknown setting 'nope'"):
        loader.load(Toy, {}, {"nope": 1}, error=KeyError)


def test_both_settings_dataclasses_use_it():
    """The same bad number reads the same from either loader; the cluster's own error class."""
    with pytest.raises(ValueError, match="BREASTDX_TRAIN_STEPS must be a number, got 'x'"):
        configs.load(env={"BREASTDX_TRAIN_STEPS": "x"})
    with pytest.raises(
        cluster_configs.ClusterConfigError, match="BREASTDX_GPU_COUNT must be a number, got 'x'"
    ):
        cluster_configs.load(env={"BREASTDX_GPU_COUNT": "x"})
    # the cluster's variables are not the pipeline's unknown settings, and the reverse
    assert configs.load(env={"BREASTDX_GPU_COUNT": "1"}).task
    assert cluster_configs.load(env={"BREASTDX_TRAIN_STEPS": "5"}).gpu_count == 1
