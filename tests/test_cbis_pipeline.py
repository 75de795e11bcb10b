"""The mammography variant's wiring (fast: no run): `create_pipeline` builds it from the
config, the module functions refuse missing settings, and it compiles for Kubeflow
Pipelines 2 with the installed run_fns (the cluster path)."""

import json

import pytest
import yaml

from breastdx_core import cluster_configs, configs

IMAGE = "registry.example.invalid/breastdx:test"
ROOT = "gs://test-bucket/breastdx"


def test_create_pipeline_builds_the_mammography_variant(tmp_path):
    from pipeline.pipeline import create_pipeline

    config = configs.load(env={}, workdir=str(tmp_path), task="cbis", variant="mammo")
    pipeline = create_pipeline(config)
    assert [c.id for c in pipeline.components] == [
        "CbisExampleGen",
        "PatchTrainer",
        "Trainer",
        "Evaluator",
        "EvaluationReport",
        "Pusher",
    ]
    by_id = {c.id: c for c in pipeline.components}
    trainer = by_id["Trainer"]
    assert trainer.inputs["base_model"].producer_component_id == "PatchTrainer"
    assert trainer.inputs["examples"].output_key == "mammograms"
    assert by_id["PatchTrainer"].inputs["examples"].output_key == "patches"
    assert json.loads(trainer.exec_properties["custom_config"]) == json.loads(
        json.dumps(config.custom_config("training", "mammography"))
    )
    assert trainer.exec_properties["module_file"].endswith(
        "components/mammo/whole_trainer/whole_trainer_module.py"
    )
    # The card is completed before the push, as in the classify variant: the report scores the
    # whole-image model on the mammograms' eval and test splits.
    report = by_id["EvaluationReport"]
    assert report.inputs["examples"].producer_component_id == "CbisExampleGen"
    assert report.inputs["examples"].output_key == "mammograms"
    assert report.inputs["model"].producer_component_id == "Trainer"
    assert report.inputs["evaluation"].producer_component_id == "Evaluator"
    assert json.loads(report.exec_properties["class_names"]) == ["benign", "malignant"]
    assert report.exec_properties["positive_index"] == 1
    assert by_id["Pusher"].inputs["report"].producer_component_id == "EvaluationReport"
    assert (
        by_id["CbisExampleGen"].exec_properties["eval_fraction"] == config.mammography.eval_fraction
    )


def test_the_variant_needs_the_cbis_task(tmp_path):
    with pytest.raises(ValueError, match="task must be 'cbis'"):
        configs.load(env={}, workdir=str(tmp_path), task="idc", variant="mammo")


def test_the_preset_starts_from_imagenet_lite0_and_resnet50_alone_restores_random_weights(tmp_path):
    from breastdx_core import pretrained

    workdir = str(tmp_path)
    preset = configs.load(env={}, workdir=workdir, task="cbis", variant="mammo")
    assert (preset.mammography.backbone, preset.training.weights) == (
        "efficientnet_lite0",
        pretrained.IMAGENET,
    )
    sent = preset.custom_config("training", "mammography")
    assert sent["mammography"]["backbone"] == "efficientnet_lite0"
    assert sent["training"]["weights"] == "imagenet"
    assert sent["training"]["pretrained_dir"] == preset.training.pretrained_dir
    study = configs.load(
        env={"BREASTDX_MAMMO_BACKBONE": "resnet50"}, workdir=workdir, task="cbis", variant="mammo"
    )
    assert (study.mammography.backbone, study.training.weights) == ("resnet50", None)
    # Weights set explicitly win over the preset either way.
    random_lite = configs.load(
        env={"BREASTDX_WEIGHTS": "none"}, workdir=workdir, task="cbis", variant="mammo"
    )
    assert (random_lite.mammography.backbone, random_lite.training.weights) == (
        "efficientnet_lite0",
        None,
    )
    keras_resnet = configs.load(
        env={"BREASTDX_MAMMO_BACKBONE": "resnet50", "BREASTDX_WEIGHTS": "imagenet"},
        workdir=workdir,
        task="cbis",
        variant="mammo",
    )
    assert keras_resnet.training.weights == "imagenet"
    # Only the mammography variant takes the preset's weights; the others keep their defaults.
    assert configs.load(env={}, workdir=workdir, task="cbis").training.weights is None
    assert configs.load(env={}, workdir=workdir, task="idc").training.weights is None


def test_lite_backbones_refuse_patches_below_their_smallest_side(tmp_path):
    with pytest.raises(ValueError, match="mammo_patch_size 28 is below 32"):
        configs.load(
            env={"BREASTDX_MAMMO_PATCH_SIZE": "28"},
            workdir=str(tmp_path),
            task="cbis",
            variant="mammo",
        )
    with pytest.raises(ValueError, match="mammo_backbone must be one of"):
        configs.load(
            env={"BREASTDX_MAMMO_BACKBONE": "vgg16"},
            workdir=str(tmp_path),
            task="cbis",
            variant="mammo",
        )
    resnet = configs.load(
        env={"BREASTDX_MAMMO_PATCH_SIZE": "28", "BREASTDX_MAMMO_BACKBONE": "resnet50"},
        workdir=str(tmp_path),
        task="cbis",
        variant="mammo",
    )
    assert resnet.mammography.patch_size == 28


def test_module_functions_take_their_settings_from_custom_config_only():
    from components.mammo import records

    config = configs.load(env={}, task="cbis", variant="mammo")
    sent = json.loads(json.dumps(config.custom_config("training", "mammography")))
    typed = records.MammoTrainerSettings.from_custom_config(sent)
    assert typed.mammography == config.mammography and typed.training == config.training
    assert typed.task == config.task_settings
    partial = {**sent, "mammography": dict(sent["mammography"])}
    del partial["mammography"]["whole_schedule"]
    with pytest.raises(ValueError, match="missing setting.*whole_schedule"):
        records.MammoTrainerSettings.from_custom_config(partial)


def test_schedules_round_trip_and_bad_stages_say_the_format():
    from components.mammo import models

    assert (
        models.parse_schedule(models.format_schedule(models.PATCH_SCHEDULE))
        == models.PATCH_SCHEDULE
    )
    with pytest.raises(ValueError, match="expected <head|top|all>:<learning rate>:<epochs>"):
        models.parse_schedule("head:1e-3")


def test_the_variant_compiles_for_kubeflow_pipelines(tmp_path):
    import kubeflow_runner

    cluster = cluster_configs.load(env={}, engine="kfp", image=IMAGE, gcs_root=ROOT)
    config = kubeflow_runner.cluster_pipeline_config(cluster, env={}, task="cbis", variant="mammo")
    path = kubeflow_runner.compile_pipeline(config, cluster, str(tmp_path / "mammo.yaml"))
    with open(path) as handle:
        spec = yaml.safe_load(handle)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "CbisExampleGen",
        "PatchTrainer",
        "Trainer",
        "Evaluator",
        "EvaluationReport",
        "Pusher",
    }
    report = tasks["EvaluationReport"]["inputs"]["artifacts"]
    assert report["examples"]["taskOutputArtifact"] == {
        "producerTask": "CbisExampleGen",
        "outputArtifactKey": "mammograms",
    }
    assert (
        tasks["Pusher"]["inputs"]["artifacts"]["report"]["taskOutputArtifact"]["producerTask"]
        == "EvaluationReport"
    )
    run_fn = {
        name: tasks[name]["inputs"]["parameters"]["run_fn"]["runtimeValue"]["constant"]
        for name in ("PatchTrainer", "Trainer")
    }
    assert run_fn == {
        "PatchTrainer": kubeflow_runner.MAMMO_PATCH_RUN_FN,
        "Trainer": kubeflow_runner.MAMMO_RUN_FN,
    }
    base = tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
    assert base == {"producerTask": "PatchTrainer", "outputArtifactKey": "model"}
    assert config.data_root.startswith(ROOT)


def test_a_folder_that_is_no_release_stops_before_the_pipeline_with_exit_2(tmp_path):
    import console_script

    (tmp_path / "not_a_release").mkdir()
    (tmp_path / "not_a_release" / "notes.txt").write_text("no CSVs here")
    stderr = console_script.user_error(
        "demo",
        "--task",
        "cbis",
        "--variant",
        "mammo",
        "--data-root",
        str(tmp_path / "not_a_release"),
        "--workdir",
        str(tmp_path / "w"),
    )
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "case-description CSV" in errors[0], stderr


def _mammogram(pid, split, malignant, view="CC"):
    from components.mammo import cbis

    abnormality = cbis.Abnormality(
        pid,
        "LEFT",
        view,
        1,
        "mass",
        "MALIGNANT" if malignant else "BENIGN",
        split,
        f"{pid}_{view}.png",
        "roi.png",
        "crop.png",
    )
    return cbis.Mammogram(abnormality.image_id, pid, split, abnormality.image_path, [abnormality])


def test_splits_keep_the_release_test_split_and_calibrate_on_held_out_train_patients():
    """test = the release's test patients, untouched; eval = a stratified share of its train
    patients (both classes), chosen by a seeded hash; no patient in two splits."""
    from components.mammo import cbis

    mammograms = [
        _mammogram(f"P_{i:03d}", "test" if i % 3 == 0 else "train", bool(i % 2), view)
        for i in range(60)
        for view in ("CC", "MLO")
    ]
    splits = cbis.pipeline_splits(mammograms, eval_fraction=0.2, seed=5)
    assert set(splits) == {
        m.patient_id for m in mammograms
    }  # every patient, once (a dict: one split each)
    assert {p for p, s in splits.items() if s == "test"} == {
        m.patient_id for m in mammograms if m.split == "test"
    }
    train_patients = {m.patient_id: m.malignant for m in mammograms if m.split == "train"}
    held = [p for p, s in splits.items() if s == "eval"]
    assert set(held) <= set(train_patients)
    for label in (False, True):
        n = sum(1 for v in train_patients.values() if v == label)
        assert sum(1 for p in held if train_patients[p] == label) == round(
            0.2 * n
        )  # stratified: both classes
    assert cbis.pipeline_splits(mammograms, 0.2, seed=5) == splits  # deterministic
    assert cbis.pipeline_splits(mammograms, 0.2, seed=6) != splits  # the seed chooses
    tiny = [
        _mammogram("P_1", "train", False),
        _mammogram("P_2", "train", False),
        _mammogram("P_3", "train", True),
        _mammogram("P_4", "test", True),
    ]
    assert cbis.pipeline_splits(tiny, 0.2, seed=0) in (
        {"P_1": "eval", "P_2": "train", "P_3": "train", "P_4": "test"},
        {"P_1": "train", "P_2": "eval", "P_3": "train", "P_4": "test"},
    )  # a lone class member stays in train
    with pytest.raises(ValueError, match="eval_fraction"):
        cbis.pipeline_splits(tiny, 1.0, seed=0)


def test_a_model_that_fits_any_size_gets_a_contract_without_size_limits():
    """The whole-mammogram model's train records are fitted already; its contract keeps
    channels, bit depth and statistics but no size range (schema: null), so a mammogram at
    its own size is assessed while an RGB photograph is still refused."""
    import io

    import numpy as np
    from PIL import Image

    from breastdx_core import decision, model_card

    def png(array, mode):
        buffer = io.BytesIO()
        Image.fromarray(array, mode).save(buffer, format="PNG")
        return buffer.getvalue()

    rng = np.random.default_rng(0)

    def smooth(height, width):  # a smooth grey field, as a downscaled mammogram is
        coarse = Image.fromarray((rng.random((9, 7)) * 120 + 40).astype(np.uint8), "L")
        return np.asarray(coarse.resize((width, height), Image.BILINEAR))

    train = [png(smooth(288, 224), "L") for _ in range(12)]  # the demo's fitted size
    accepted = decision.measure_accepted(train, "train split", any_size=True)
    assert accepted["width"] is None and accepted["height"] is None
    bigger = png(smooth(700, 500), "L")
    assert decision.contract_reason(accepted, decision.inspect_image(bigger)) is None
    sized = decision.measure_accepted(train, "train split")
    assert "px" in decision.contract_reason(sized, decision.inspect_image(bigger))
    photo = png((rng.random((700, 500, 3)) * 255).astype(np.uint8), "RGB")
    assert "RGB" in decision.contract_reason(accepted, decision.inspect_image(photo))
    card = {
        "schema_version": 1,
        "intended_use": "Research use only, not a diagnosis.",
        "task": "cbis",
        "class_names": ["benign", "malignant"],
        "positive_class": "malignant",
        "model_name": "m",
        "version": 1,
        "pushed_at": "2026-01-01T00:00:00Z",
        "input_contract": {
            "signature": "serving_default",
            "model_size": [288, 224],
            "any_size": True,
        },
    }
    model_card.validate(model_card.with_accepted(card, accepted))
    with pytest.raises(model_card.CardError, match="input_contract.accepted.width"):
        model_card.validate(model_card.with_accepted(card, {**accepted, "width": [1]}))
