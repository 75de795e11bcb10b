"""The Tuner: wired into the pipeline when configured, and `tuner_fn` returns a working
KerasTuner search whose best values reach the Trainer."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from breastdx_core import configs
from components.trainer import trainer_module
from pipeline.pipeline import create_pipeline


def _components(config):
    return {c.id: c for c in create_pipeline(config).components}


def test_pipeline_wires_the_tuner_only_when_on(workdir):
    off = _components(configs.load(env={}, workdir=workdir))
    assert "Tuner" not in off
    assert "hyperparameters" not in off["Trainer"].inputs

    on = _components(configs.load(env={}, workdir=workdir, tune=True, tuner_trials=2))
    tuner, trainer = on["Tuner"], on["Trainer"]
    assert isinstance(tuner, tfx.components.Tuner)
    assert trainer.inputs["hyperparameters"].producer_component_id == "Tuner"
    assert tuner.inputs["examples"].producer_component_id == "Transform"
    assert tuner.exec_properties["module_file"] == trainer.exec_properties["module_file"]
    assert json.loads(tuner.exec_properties["custom_config"])["tuning"]["trials"] == 2


def test_tuner_fn_searches_and_its_best_values_reach_run_fn(tmp_path):
    config = configs.load(
        env={},
        tuner_trials=2,
        tuner_learning_rates=(1e-3, 1e-4),
        tuner_dropouts=(0.2,),
        tuner_unfreeze=(2,),
        tuner_optimizers=("adam", "sgd"),
        tuner_batch_sizes=(4,),
    ).custom_config("training", "tuning")
    config["task"]["model_size"] = [32, 32]  # tiny: seconds per trial
    fn_args = tfx.components.FnArgs(
        working_dir=str(tmp_path),
        train_files=[],
        eval_files=[],
        train_steps=2,
        eval_steps=1,
        transform_output=None,
        custom_config=config,
    )
    result = trainer_module.tuner_fn(fn_args)
    assert isinstance(result, tfx.components.TunerFnResult)
    space = {hp.name for hp in result.tuner.oracle.hyperparameters.space}
    assert space == set(trainer_module.TUNABLE)
    assert result.fit_kwargs["steps_per_epoch"] == 2 and result.fit_kwargs["validation_steps"] == 1

    rng = np.random.default_rng(0)
    images = rng.random((8, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 2, 8)

    def tiny(batch_size):
        data = (
            tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
            .batch(batch_size)
            .repeat()
        )
        return data, data

    result.tuner.hypermodel.make_datasets = tiny  # in place of the Transform output
    result.tuner.search(**result.fit_kwargs)
    best = result.tuner.get_best_hyperparameters()[0]
    tuned = trainer_module.tuned_values(best.get_config())  # what the Tuner's artifact holds
    assert set(tuned) == set(trainer_module.TUNABLE)
    assert tuned["learning_rate"] in (1e-3, 1e-4) and tuned["batch_size"] == 4
    assert trainer_module.tuned_values(None) == {}


@pytest.mark.e2e
def test_a_tuned_run_trains_with_the_tuners_best_values(tmp_path):
    import glob
    import json

    import local_runner
    from breastdx_core import contract
    from pipeline import synthetic

    data_root = str(tmp_path / "data")
    synthetic.write_idc(data_root, patients=24, patches_per_patient=6, seed=5)
    config = configs.load(
        env={},
        workdir=str(tmp_path / "work"),
        data_root=data_root,
        train_steps=1,
        eval_steps=1,
        epochs=1,
        tune=True,
        tuner_trials=2,
        tuner_train_steps=1,
        tuner_batch_sizes=(8,),
        tuner_learning_rates=(1e-3, 1e-4),
        auc_lower_bound=0.0,
        auc_max_regression=1.0,
    )
    local_runner.run(config)
    [best] = glob.glob(
        os.path.join(config.pipeline_root, "Tuner", "best_hyperparameters", "*", "*")
    )
    chosen = trainer_module.tuned_values(json.load(open(best)))
    [card] = glob.glob(
        os.path.join(
            config.pipeline_root,
            "Trainer",
            "model",
            "*",
            "Format-Serving",
            contract.MODEL_CARD_RELPATH,
        )
    )
    card = json.load(open(card))
    assert card["tuned_hyperparameters"] == chosen
    assert (
        card["hyperparameters"]["batch_size"] == 8
        and card["hyperparameters"]["learning_rate"] == chosen["learning_rate"]
    )
