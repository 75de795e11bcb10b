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
    assert [c.id for c in pipeline.components] == ["CbisExampleGen", "PatchTrainer", "Trainer", "Evaluator",
                                                   "Pusher"]
    by_id = {c.id: c for c in pipeline.components}
    trainer = by_id["Trainer"]
    assert trainer.inputs["base_model"].producer_component_id == "PatchTrainer"
    assert trainer.inputs["examples"].output_key == "mammograms"
    assert by_id["PatchTrainer"].inputs["examples"].output_key == "patches"
    assert json.loads(trainer.exec_properties["custom_config"]) == config.mammo_whole_trainer_config()
    assert trainer.exec_properties["module_file"].endswith("components/mammo/whole_trainer/whole_trainer_module.py")


def test_the_variant_needs_the_cbis_task(tmp_path):
    with pytest.raises(ValueError, match="task must be 'cbis'"):
        configs.load(env={}, workdir=str(tmp_path), task="idc", variant="mammo")


def test_module_functions_take_their_settings_from_custom_config_only():
    from components.mammo import records
    from components.mammo.patch_trainer import patch_trainer_module
    from components.mammo.whole_trainer import whole_trainer_module

    config = configs.load(env={}, task="cbis", variant="mammo")
    assert set(patch_trainer_module.SETTINGS) <= set(config.mammo_patch_trainer_config())
    assert set(whole_trainer_module.SETTINGS) <= set(config.mammo_whole_trainer_config())
    partial = {k: v for k, v in config.mammo_whole_trainer_config().items() if k != "whole_schedule"}
    with pytest.raises(ValueError, match=r"lacks \['whole_schedule'\]"):
        records.require_settings(partial, whole_trainer_module.SETTINGS, "Trainer (whole image)")


def test_schedules_round_trip_and_bad_stages_say_the_format():
    from components.mammo import models

    assert models.parse_schedule(models.format_schedule(models.PATCH_SCHEDULE)) == models.PATCH_SCHEDULE
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
    assert set(tasks) == {"CbisExampleGen", "PatchTrainer", "Trainer", "Evaluator", "Pusher"}
    run_fn = {name: tasks[name]["inputs"]["parameters"]["run_fn"]["runtimeValue"]["constant"]
              for name in ("PatchTrainer", "Trainer")}
    assert run_fn == {"PatchTrainer": kubeflow_runner.MAMMO_PATCH_RUN_FN, "Trainer": kubeflow_runner.MAMMO_RUN_FN}
    base = tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
    assert base == {"producerTask": "PatchTrainer", "outputArtifactKey": "model"}
    assert config.data_root.startswith(ROOT)


def test_a_folder_that_is_no_release_stops_before_the_pipeline_with_exit_2(tmp_path):
    import subprocess
    import sys

    (tmp_path / "not_a_release").mkdir()
    (tmp_path / "not_a_release" / "notes.txt").write_text("no CSVs here")
    done = subprocess.run([sys.executable, "-m", "breastdx_cli.main", "demo", "--task", "cbis", "--variant", "mammo",
                           "--data-root", str(tmp_path / "not_a_release"), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "case-description CSV" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
