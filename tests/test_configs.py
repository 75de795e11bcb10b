import pytest

from breastdx_core import configs, contract


def test_defaults_and_paths(tmp_path):
    config = configs.load(env={}, workdir=str(tmp_path))
    assert config.pipeline_name == "breastdx-idc" and config.model_name == "breastdx-idc"
    assert config.metadata_path.startswith(str(tmp_path)) and config.metadata_path.endswith(".db")
    assert config.task_settings.class_names == tuple(contract.get_task("idc").class_names)


def test_env_then_flags_override(tmp_path):
    env = {
        "BREASTDX_TRAIN_STEPS": "5",
        "BREASTDX_BACKBONE": "resnet50",
        "BREASTDX_WEIGHTS": "none",
        "BREASTDX_CLASS_WEIGHTS": "false",
        "BREASTDX_WORKDIR": str(tmp_path),
    }
    config = configs.load(env=env, backbone="xception")
    assert (
        config.training.train_steps == 5
        and config.training.backbone == "xception"
        and config.training.weights is None
    )
    assert config.training.class_weights is False
    tuned = configs.load(
        env={"BREASTDX_TUNER_DROPOUTS": "0.1, 0.3", "BREASTDX_DENSE_UNITS": "256,64"}
    )
    assert tuned.tuning.dropouts == (0.1, 0.3) and tuned.training.dense_units == (256, 64)


@pytest.mark.parametrize(
    "env,message",
    [
        ({"BREASTDX_NOPE": "1"}, "unknown setting BREASTDX_NOPE"),
        ({"BREASTDX_TRAIN_STEPS": "many"}, "BREASTDX_TRAIN_STEPS"),
        ({"BREASTDX_TASK": "lung"}, "unknown task"),
        ({"BREASTDX_BACKBONE": "alexnet"}, "backbone must be one of"),
        ({"BREASTDX_TUNER_BATCH_SIZES": "16,big"}, "comma-separated int"),
    ],
)
def test_bad_settings_are_clear_errors(env, message):
    with pytest.raises(ValueError, match=message):
        configs.load(env=env)
