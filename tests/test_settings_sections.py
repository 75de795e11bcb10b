"""Settings by concern (breastdx_core/settings.py): every public flat name is one section
field, and what each component is sent is its sections' dictionary form, which its module
file rebuilds into the same typed objects."""

import dataclasses
import json

import pytest

from breastdx_core import configs, settings


def _section_fields():
    for holder in dataclasses.fields(configs.PipelineConfig):
        kind = holder.default_factory
        if isinstance(kind, type) and issubclass(kind, settings.Section):
            for field in dataclasses.fields(kind):
                yield holder.name, field


def _as_env(value):
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "none" if value is None else str(value)


def test_every_flat_name_resolves_to_exactly_one_section_field():
    claimed = [(s, f.name) for s, f in configs.FLAT_NAMES.values() if s is not None]
    assert len(claimed) == len(set(claimed))  # no field under two names
    assert sorted(claimed) == sorted((s, f.name) for s, f in _section_fields())  # every field
    assert configs.FLAT_NAMES["seg_encoder"][0] == "segmentation"
    assert configs.FLAT_NAMES["tune"][1].name == "enabled"
    assert configs.FLAT_NAMES["extra_beam_args"][1].name == "extra_args"
    assert configs.FLAT_NAMES["mammo_min_whole_auc"][0] == "mammography"
    # Each name is a variable `load` reads into its field (here: the field's default back);
    # split_buckets, a tuple of pairs, has no variable form.
    env = {
        f"BREASTDX_{name.upper()}": _as_env(field.default)
        for name, (section, field) in configs.FLAT_NAMES.items()
        if section is not None and name != "split_buckets"
    }
    loaded = configs.load(env=env)
    for name, (section, field) in configs.FLAT_NAMES.items():
        if f"BREASTDX_{name.upper()}" in env:
            assert getattr(getattr(loaded, section), field.name) == field.default, name
            assert loaded.flat()[name] == field.default, name
    assert configs.PipelineConfig.from_flat(loaded.flat()) == loaded


def test_unknown_or_ambiguous_names_are_refused():
    with pytest.raises(ValueError, match="unknown setting 'backbne'"):
        configs.load(env={}, backbne="vgg16")
    with pytest.raises(ValueError, match="unknown setting BREASTDX_SEG_BACKBONE"):
        configs.load(env={"BREASTDX_SEG_BACKBONE": "unet"})
    with pytest.raises(AttributeError):
        configs.load(env={}).encoder  # a section's own name is not a flat name  # noqa: B018

    @dataclasses.dataclass
    class Twice:
        training: settings.TrainingSettings = dataclasses.field(
            default_factory=settings.TrainingSettings
        )
        backbone: str = "vgg16"

    with pytest.raises(TypeError, match="'backbone' is claimed twice"):
        settings.flat_names(Twice)


def test_each_components_custom_config_round_trips_to_its_typed_sections(tmp_path):
    from components.mammo.records import MammoTrainerSettings
    from components.segmentation.trainer.unet_trainer_module import UNetSettings
    from components.trainer.sections import TrainerSettings
    from components.transform.transform_module import TransformSettings
    from pipeline.pipeline import create_pipeline

    kinds = {
        "classify": {
            "Transform": TransformSettings,
            "Tuner": TrainerSettings,
            "Trainer": TrainerSettings,
        },
        "segment": {"Transform": TransformSettings, "Trainer": UNetSettings},
        "mammo": {"PatchTrainer": MammoTrainerSettings, "Trainer": MammoTrainerSettings},
    }
    tasks = {"classify": "idc", "segment": "busi", "mammo": "cbis"}
    for variant, by_id in kinds.items():
        config = configs.load(
            env={}, workdir=str(tmp_path), task=tasks[variant], variant=variant, tune=True
        )
        components = {c.id: c for c in create_pipeline(config).components}
        for component_id, kind in by_id.items():
            sent = json.loads(components[component_id].exec_properties["custom_config"])
            typed = kind.from_custom_config(sent)
            assert typed.task == config.task_settings
            for field in dataclasses.fields(typed):
                if field.name != "task" and getattr(typed, field.name) is not None:
                    assert getattr(typed, field.name) == getattr(config, field.name), field.name
            assert typed.to_custom_config() == sent
        sent["training"]["backbne"] = "vgg16"
        with pytest.raises(settings.SettingsError, match="unknown setting.*backbne"):
            kind.from_custom_config(sent)


def test_the_trainer_parts_settings_and_the_tuners_values():
    from components.trainer.sections import TrainerSettings

    config = configs.load(env={}, batch_size=32)
    built = TrainerSettings.of(config)
    assert built == TrainerSettings.from_custom_config(config.custom_config("training"))
    assert built.run == settings.RuntimeSettings()  # a local run: no runtime section
    tuned = built.tuned({"learning_rate": 3e-4, "batch_size": 16})
    assert (tuned.training.learning_rate, tuned.training.batch_size) == (3e-4, 16)
    assert tuned.training.backbone == built.training.backbone and built.training.batch_size == 32
    assert built.tuned({}) is built and built.tuned(None) is built
    with pytest.raises(TypeError, match="lerning_rate"):
        built.tuned({"lerning_rate": 1e-3})
    assert built.card_values()["dense_units"] == list(config.training.dense_units)
