"""kubeflow_runner.py: the pipeline compiles for Kubeflow Pipelines 2 and Vertex AI,
the Trainer asks for the GPU, user code is referred to by module path, and the
packages load in the real loaders (kfp.Client's package reader, aiplatform.PipelineJob).

Compiling imports TFX (~15 s): one module-scoped fixture compiles both packages.
"""

from __future__ import annotations

import json
import os

import pytest

from breastdx_core import cluster_configs

IMAGE = "registry.example.invalid/breastdx/pipeline:test"
ROOT = "gs://example-bucket/breastdx"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{"kfp": (package path, PipelineSpec dict), "vertex": (path, PipelineJob dict)}."""
    import kubeflow_runner

    out = tmp_path_factory.mktemp("kubeflow")
    result = {}
    for engine, name in (("kfp", "pipeline.yaml"), ("vertex", "pipeline.json")):
        cluster = cluster_configs.load(
            env={}, engine=engine, image=IMAGE, gcs_root=ROOT, distribution_strategy="mirrored"
        )
        config = kubeflow_runner.cluster_pipeline_config(cluster, env={})
        path = kubeflow_runner.compile_pipeline(config, cluster, str(out / name))
        result[engine] = path
    return result


def _spec(compiled, engine):
    from kfp.client import client as kfp_client_module

    if engine == "kfp":
        # kfp.Client's own reader: strict proto parse of the YAML PipelineSpec.
        from google.protobuf import json_format

        doc = kfp_client_module._extract_pipeline_yaml(compiled["kfp"])  # pylint: disable=protected-access
        return json_format.MessageToDict(doc.pipeline_spec)
    with open(compiled["vertex"]) as f:
        return json.load(f)["pipelineSpec"]


@pytest.mark.parametrize("engine, gpu", [("kfp", "nvidia.com/gpu"), ("vertex", "NVIDIA_TESLA_T4")])
def test_trainer_requests_the_gpu(compiled, engine, gpu):
    executors = _spec(compiled, engine)["deploymentSpec"]["executors"]
    resources = executors["Trainer_executor"]["container"]["resources"]
    assert resources["accelerator"] == {"type": gpu, "count": "1"}
    defaults = cluster_configs.ClusterConfig()
    assert (
        resources["cpuRequest"] == defaults.trainer_cpu_request
        and resources["memoryLimit"] == defaults.trainer_memory_gb
    )
    others = [
        name
        for name, ex in executors.items()
        if name != "Trainer_executor"
        and "accelerator" in ex.get("container", {}).get("resources", {})
    ]
    assert others == []  # only training needs the GPU node pool


def test_every_step_runs_the_image_with_cluster_beam_args(compiled):
    executors = _spec(compiled, "vertex")["deploymentSpec"]["executors"]
    containers = {name: ex["container"] for name, ex in executors.items() if "container" in ex}
    assert {c["image"] for c in containers.values()} == {IMAGE}
    assert "--runner=DirectRunner" in containers["Transform_executor"]["args"]


def test_user_code_by_module_path_and_strategy(compiled):
    tasks = _spec(compiled, "kfp")["root"]["dag"]["tasks"]

    def param(task, name):  # schema 2.1: runtimeValue.constant
        return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]

    assert (
        param("Transform", "preprocessing_fn")
        == "components.transform.transform_module.preprocessing_fn"
    )
    assert param("Trainer", "run_fn") == "components.trainer.trainer_module.run_fn"
    for task in ("Transform", "Trainer"):
        assert "module_file" not in tasks[task]["inputs"]["parameters"]
        assert "module_path" not in tasks[task]["inputs"]["parameters"]  # no wheel was built
    custom = json.loads(param("Trainer", "custom_config"))
    assert custom["runtime"]["distribution_strategy"] == "mirrored"
    assert custom["training"]["backbone"]  # the model's settings are still there
    assert (
        custom["training"]["pretrained_dir"] == "/opt/breastdx/.cache/pretrained"
    )  # the image's converted weights
    # the curated schema is read from the image, not from the compiling machine
    assert (
        param("ImportSchemaGen", "schema_file") == "/opt/breastdx/breastdx_core/schemas/idc.pbtxt"
    )
    assert param("ImageExampleGen", "input_base") == f"{ROOT}/data/idc"


def test_vertex_job_loads_in_aiplatform(compiled):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    with open(compiled["vertex"]) as f:
        job_dict = json.load(f)
    assert job_dict["runtimeConfig"]["gcsOutputDirectory"] == f"{ROOT}/pipelines/breastdx-idc"
    job = aiplatform.PipelineJob(
        display_name="breastdx-idc",
        template_path=compiled["vertex"],
        project="example-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    assert job._gca_resource.runtime_config.gcs_output_directory == f"{ROOT}/pipelines/breastdx-idc"
    assert os.path.basename(compiled["kfp"]).endswith(".yaml")


def test_compile_needs_image_and_gcs_root():
    import kubeflow_runner

    cluster = cluster_configs.load(env={}, gcs_root=ROOT)
    with pytest.raises(cluster_configs.ClusterConfigError, match="BREASTDX_IMAGE"):
        kubeflow_runner.compile_pipeline(
            kubeflow_runner.cluster_pipeline_config(cluster, env={}), cluster
        )


@pytest.mark.parametrize("engine", ["kfp", "vertex"])
def test_every_producer_is_a_task_and_no_executor_is_refused(compiled, engine):
    """As compiled, with no repair step: every taskOutputParameter/Artifact names a task of
    the DAG, and no executor is a resolver, importer-free custom job or anything else
    that open-source KFP 2's Argo compiler refuses (pipeline/compat/dry_run.py knows its rules)."""
    from pipeline.compat import dry_run

    spec = _spec(compiled, engine)
    tasks = spec["root"]["dag"]["tasks"]
    producers = [
        ref["producerTask"]
        for task in tasks.values()
        for kind in ("parameters", "artifacts")
        for value in task.get("inputs", {}).get(kind, {}).values()
        for ref in [value.get("taskOutputParameter") or value.get("taskOutputArtifact")]
        if ref
    ]
    assert producers and set(producers) <= set(tasks)
    assert not any("ImageIngest" in name or "LatestBlessed" in name for name in tasks)
    assert dry_run.refused_executors(spec, "kfp") == []
    kinds = {next(iter(ex)) for ex in spec["deploymentSpec"]["executors"].values()}
    assert kinds == {"container"}  # no resolver, importer or custom job


def test_image_example_gen_compiles_with_its_driver_and_the_tree_parameter(compiled):
    spec = _spec(compiled, "vertex")
    executor = spec["deploymentSpec"]["executors"]["ImageExampleGen_executor"]["container"]
    assert executor["args"][:2] == [
        "--executor_class_path",
        "components.image_ingest.executor.Executor",
    ]
    driver = executor["lifecycle"]["preCacheCheck"]["command"]
    assert "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver" in driver
    task = spec["root"]["dag"]["tasks"]["ImageExampleGen"]
    assert task["inputs"]["parameters"]["tree_fingerprint"] == {
        "componentInputParameter": "tree_fingerprint"
    }
    assert "tree_fingerprint" in spec["root"]["inputDefinitions"]["parameters"]


@pytest.mark.parametrize("engine", ["kfp", "vertex"])
def test_package_names_its_root_and_every_parameters_default(compiled, engine):
    """What KFP's driver needs for a run that names neither (UI, recurring runs): a root TFX
    can write, and a value for every root parameter (TFX compiles none)."""
    from pipeline.compat import dry_run

    spec = _spec(compiled, engine)
    assert spec["defaultPipelineRoot"] == f"{ROOT}/pipelines/breastdx-idc"
    parameter = spec["root"]["inputDefinitions"]["parameters"]["tree_fingerprint"]
    assert parameter == {"parameterType": "STRING", "defaultValue": "", "isOptional": True}
    # The driver's refusal that the defaults prevent, on the package as TFX alone compiles it
    bare = json.loads(json.dumps(spec))
    del bare["root"]["inputDefinitions"]["parameters"]["tree_fingerprint"]["defaultValue"]
    run = dry_run.DryRun(compiled[engine], engine, "/nonexistent", run_as=None)
    run.spec = bare
    with pytest.raises(
        dry_run.DryRunError, match="parent DAG does not have input parameter tree_fingerprint"
    ):
        run.check_parameters()
    run.spec = spec
    run.check_parameters()


def test_launcher_defaults_keep_a_second_platform_document(tmp_path):
    import yaml

    import kubeflow_runner

    path = tmp_path / "p.yaml"
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    path.write_text(
        yaml.safe_dump_all(
            [
                {
                    "root": {
                        "inputDefinitions": {
                            "parameters": {"tree_fingerprint": {"parameterType": "STRING"}}
                        }
                    }
                },
                platform,
            ]
        )
    )
    kubeflow_runner.add_launcher_defaults(str(path), f"{ROOT}/pipelines/p")
    spec, second = yaml.safe_load_all(path.read_text())
    assert spec["defaultPipelineRoot"] == f"{ROOT}/pipelines/p" and second == platform
    assert spec["root"]["inputDefinitions"]["parameters"]["tree_fingerprint"]["defaultValue"] == ""


def test_a_root_tfx_cannot_write_is_refused_at_compile(tmp_path):
    import kubeflow_runner

    path = tmp_path / "p.yaml"
    path.write_text("root: {}\n")
    with pytest.raises(kubeflow_runner.errors.BreastdxError, match="no 'minio' scheme"):
        kubeflow_runner.add_launcher_defaults(str(path), "minio://mlpipeline/v2/artifacts")


@pytest.mark.parametrize(
    "task, variant", [("idc", "classify"), ("busi", "classify"), ("busi", "segment")]
)
def test_every_variant_compiles(tmp_path, task, variant):
    import kubeflow_runner

    cluster = cluster_configs.load(env={}, engine="kfp", image=IMAGE, gcs_root=ROOT)
    config = kubeflow_runner.cluster_pipeline_config(cluster, env={}, task=task, variant=variant)
    path = kubeflow_runner.compile_pipeline(config, cluster, str(tmp_path / "p.yaml"))
    import yaml

    with open(path) as handle:
        tasks = yaml.safe_load(handle)["root"]["dag"]["tasks"]
    fn = tasks["Trainer"]["inputs"]["parameters"]["run_fn"]["runtimeValue"]["constant"]
    assert fn == kubeflow_runner.USER_CODE[variant][1]


@pytest.mark.parametrize("engine", ["kfp", "vertex"])
def test_trainer_fits_the_gpu_node_and_every_step_has_resources(compiled, engine):
    """The compiled Trainer's requests fit what an n1-standard-8 with a T4 (the GPU pool of
    docs/cluster.md) offers after GKE's reservations (8 vCPU / 30 GB as requests never
    schedule); every container step has requests and limits (ImageExampleGen included,
    whose platform config TFX drops)."""
    from node_allocatable import GB, allocatable

    executors = _spec(compiled, engine)["deploymentSpec"]["executors"]
    trainer = executors["Trainer_executor"]["container"]["resources"]
    node = allocatable("n1-standard-8")
    assert (
        trainer["cpuRequest"] <= node["cpu"]
        and trainer["memoryRequest"] * GB <= node["memory_bytes"]
    ), (trainer, node)
    assert (
        trainer["cpuRequest"] <= trainer["cpuLimit"]
        and trainer["memoryRequest"] <= trainer["memoryLimit"]
    )
    assert (
        trainer["cpuLimit"] <= node["cpu"] + 0.4
    )  # a limit above the node only invites throttling surprises
    old_default = {
        "cpu": 8.0,
        "memory_bytes": 30.0 * GB,
    }  # what the Trainer asked before: Pending forever
    assert old_default["cpu"] > node["cpu"] and old_default["memory_bytes"] > node["memory_bytes"]
    bare = [
        name
        for name, ex in executors.items()
        if "container" in ex
        and not {"cpuLimit", "memoryLimit", "cpuRequest", "memoryRequest"}
        <= set(ex["container"].get("resources", {}))
    ]
    assert bare == []


def test_trainer_pool_settings_reach_kfps_own_reader(compiled, tmp_path):
    """The package compiled with defaults is one document; with a node selector, tolerations
    and a pull secret, kfp.Client's reader finds them in its PlatformSpec on the Trainer."""
    import shutil

    import yaml
    from google.protobuf import json_format
    from kfp.client import client as kfp_client_module
    from test_kubeflow_platform_spec import POOL_ENV, check_platform_spec

    import kubeflow_runner

    with open(compiled["kfp"]) as f:
        assert len(list(yaml.safe_load_all(f))) == 1
    package = tmp_path / "pipeline.yaml"
    shutil.copy(compiled["kfp"], package)
    platform = kubeflow_runner.add_platform_spec(str(package), cluster_configs.load(env=POOL_ENV))
    check_platform_spec(platform)
    doc = kfp_client_module._extract_pipeline_yaml(str(package))  # pylint: disable=protected-access
    spec = json_format.MessageToDict(doc.pipeline_spec)
    trainer = spec["root"]["dag"]["tasks"]["Trainer"]["componentRef"]["name"]
    label = spec["components"][trainer]["executorLabel"]
    platform_spec = json_format.MessageToDict(doc.platform_spec)
    executors = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors[label]["nodeSelector"] == {"labels": {"cloud.google.com/gke-nodepool": "gpu"}}
    assert len(executors[label]["tolerations"]) == 2
    # the pull secret on every step
    assert set(executors) == set(spec["deploymentSpec"]["executors"])
