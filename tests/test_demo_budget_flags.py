"""`breastdx demo` sets the backbone's weights and the data-sized budget by flag, not
only by BREASTDX_WEIGHTS / _EPOCHS / _MAX_TRAIN_MINUTES."""

from breastdx_cli import main
from breastdx_core import configs
from components.trainer.sections import TrainerSettings


def _config(monkeypatch, tmp_path, *flags):
    for name in (
        "BREASTDX_WEIGHTS",
        "BREASTDX_EPOCHS",
        "BREASTDX_MAX_TRAIN_MINUTES",
        "BREASTDX_TRAIN_STEPS",
        "BREASTDX_BACKBONE",
        "BREASTDX_DATA_ROOT",
        "BREASTDX_TASK",
    ):
        monkeypatch.delenv(name, raising=False)
    args = main.build_parser().parse_args(["demo", "--workdir", str(tmp_path), *flags])
    return main._config(args)


def test_demo_flags_set_weights_and_the_data_sized_budget(monkeypatch, tmp_path):
    config = _config(
        monkeypatch,
        tmp_path,
        "--data-root",
        str(tmp_path / "real"),
        "--backbone",
        "efficientnet_lite0",
        "--weights",
        "imagenet",
        "--epochs",
        "4",
        "--max-train-minutes",
        "14",
    )
    assert (
        config.training.backbone,
        config.training.weights,
        config.training.epochs,
        config.training.max_train_minutes,
    ) == (
        "efficientnet_lite0",
        "imagenet",
        4,
        14.0,
    )
    assert config.training.train_steps == 0  # real data: whole epochs, not the demo's 24 steps
    # what the Trainer rebuilds from its custom_config
    trainer = TrainerSettings.from_custom_config(config.custom_config("training")).training
    assert (trainer.weights, trainer.epochs, trainer.max_train_minutes) == (
        "imagenet",
        4,
        14.0,
    )


def test_demo_without_the_flags_keeps_the_defaults(monkeypatch, tmp_path):
    real = _config(monkeypatch, tmp_path, "--data-root", str(tmp_path / "real"))
    defaults = configs.load(env={}, workdir=str(tmp_path), data_root=str(tmp_path / "real"))
    preset = configs.REAL_DATA_TASK_DEFAULTS["idc"]
    assert (
        real.training.backbone,
        real.training.weights,
        real.training.epochs,
        real.training.max_train_minutes,
        real.training.train_steps,
    ) == (
        preset["backbone"],
        preset["weights"],
        defaults.training.epochs,
        preset["max_train_minutes"],
        0,
    )
    assert real.training.backbone_input_size == preset["backbone_input_size"]
    synthetic = _config(monkeypatch, tmp_path)
    assert (synthetic.training.train_steps, synthetic.training.epochs) == (
        24,
        4,
    )  # the synthetic demo's preset
