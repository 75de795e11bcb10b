"""Compiles the pipeline for a cluster: KubeflowV2DagRunner to a Kubeflow Pipelines 2 /
Vertex AI Pipelines package.

`python kubeflow_runner.py` (or `breastdx pipeline compile|create|update`, which call
`compile_pipeline()`) builds the same `create_pipeline()` as `local_runner.py` and
changes only what a cluster needs:

- the pipeline root, data and serving roots under ``BREASTDX_GCS_ROOT`` (gs://…);
- Beam flags for the data components (DirectRunner in the pod, or Dataflow);
- the Trainer on a GPU (`ResourceSpec` accelerator) with a distribution strategy;
- user code by module path: the pipeline image has this project installed, so
  Transform and Trainer import `components.…` there, and nothing is packaged or
  uploaded at compile time (TFX would otherwise upload a wheel to the gs:// root).

Settings: `breastdx_core.configs.load()` (the model) and `breastdx_core.cluster_configs.load()`
(the cluster); both read BREASTDX_* variables.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from typing import Any

from breastdx_core import errors

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # entry point: Keras 2 everywhere (README)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: E402
from tfx import v1 as tfx  # noqa: E402
from tfx.types import standard_component_specs as specs  # noqa: E402

from breastdx_core import cluster_configs, configs  # noqa: E402
from breastdx_core.settings import RuntimeSettings  # noqa: E402
from pipeline.compat import example_gen_resources  # noqa: E402
from pipeline.pipeline import MAMMO_PATCH_RUN_FN, MAMMO_WHOLE_RUN_FN, create_pipeline  # noqa: E402

log = logging.getLogger("breastdx")

TRAINER_ID = "Trainer"
TRANSFORM_ID = "Transform"
# Functions in the installed package (and so in the pipeline image) that the
# Transform and Trainer executors import, per pipeline variant.
PREPROCESSING_FN = "components.transform.transform_module.preprocessing_fn"
RUN_FN = "components.trainer.trainer_module.run_fn"
SEG_PREPROCESSING_FN = "components.segmentation.transform.seg_transform_module.preprocessing_fn"
SEG_RUN_FN = "components.segmentation.trainer.unet_trainer_module.run_fn"
# The mammography variant has no Transform: its first slot is the patch Trainer's run_fn
# (create_mammography_pipeline takes both installed run_fns when given a dotted path).
MAMMO_RUN_FN = MAMMO_WHOLE_RUN_FN
USER_CODE = {
    "classify": (PREPROCESSING_FN, RUN_FN),
    "segment": (SEG_PREPROCESSING_FN, SEG_RUN_FN),
    "mammo": (MAMMO_PATCH_RUN_FN, MAMMO_RUN_FN),
}
# The run parameter that carries a digest of the image tree (`breastdx run create` and
# `breastdx pipeline dry-run` compute it): the KFP backend runs no ExampleGen driver, so
# without it a cached ingest would survive a changed image folder.
TREE_FINGERPRINT_PARAMETER = "tree_fingerprint"
# The compiled default of every run parameter (TFX drops its RuntimeParameters' defaults):
# an empty fingerprint lets the ingest run without the tree digest, as local runs do.
RUN_PARAMETER_DEFAULTS: dict[str, Any] = {TREE_FINGERPRINT_PARAMETER: ""}

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


class CompileError(errors.BreastdxError, RuntimeError):
    """The pipeline cannot be compiled as configured (the message says what to change)."""


def _component(pipeline: tfx.dsl.Pipeline, component_id: str):
    for component in pipeline.components:
        if component.id == component_id:
            return component
    raise CompileError(
        f"the pipeline has no component with id {component_id!r}; "
        f"ids: {', '.join(c.id for c in pipeline.components)}"
    )


def trainer_resources(cluster: cluster_configs.ClusterConfig) -> ResourceSpec:
    """The Trainer's container resources: CPU and memory requests and limits and the GPU."""
    wanted = cluster.trainer_resources()
    spec = ResourceSpec(
        cpu_limit=wanted["cpu_limit"],
        memory_limit=wanted["memory_limit"],
        cpu_request=wanted["cpu_request"],
        memory_request=wanted["memory_request"],
    )
    if wanted["accelerator_count"]:
        spec.accelerator.CopyFrom(
            ResourceSpec.AcceleratorConfig(
                type=wanted["accelerator_type"], count=wanted["accelerator_count"]
            )
        )
    return spec


def configure_steps(
    pipeline: tfx.dsl.Pipeline, cluster: cluster_configs.ClusterConfig
) -> tfx.dsl.Pipeline:
    """Gives every component without a platform config the data steps' requests and
    limits, so no pod is scheduled without them (the Trainer keeps its own)."""
    for component in pipeline.components:
        if (
            hasattr(component, "with_platform_config")
            and getattr(component, "platform_config", None) is None
        ):
            component.with_platform_config(ResourceSpec(**cluster.step_resources()))
    return pipeline


def kubernetes_executor_configs(
    spec: dict[str, Any], cluster: cluster_configs.ClusterConfig, trainer_id: str = TRAINER_ID
) -> dict[str, dict[str, Any]]:
    """Executor label -> KFP's KubernetesExecutorConfig (its JSON form, kfp-kubernetes'
    kubernetes_executor_config.proto): the Trainer's node selector and tolerations, every
    executor's image pull secrets. Empty when none is configured."""
    selector, tolerations = cluster.node_selector_labels(), cluster.toleration_list()
    secrets = [{"secretName": name} for name in cluster.pull_secret_names()]
    trainer_task = spec["root"]["dag"]["tasks"].get(trainer_id, {})
    trainer_ref = trainer_task.get("componentRef", {}).get("name")
    if (selector or tolerations) and trainer_ref is None:
        raise CompileError(
            f"the package has no {trainer_id} task to put on the node pool "
            f"(BREASTDX_TRAINER_NODE_SELECTOR / BREASTDX_TRAINER_TOLERATIONS)"
        )
    trainer_label = spec["components"][trainer_ref]["executorLabel"] if trainer_ref else None
    out: dict[str, dict[str, Any]] = {}
    for label in spec["deploymentSpec"]["executors"]:
        config: dict[str, Any] = {}
        if label == trainer_label and selector:
            config["nodeSelector"] = {"labels": dict(selector)}
        if label == trainer_label and tolerations:
            config["tolerations"] = [dict(t) for t in tolerations]
        if secrets:
            config["imagePullSecret"] = [dict(s) for s in secrets]
        if config:
            out[label] = config
    return out


def add_platform_spec(path: str, cluster: cluster_configs.ClusterConfig) -> dict[str, Any]:
    """Appends KFP's ``platforms.kubernetes`` document to a compiled ``.yaml`` PipelineSpec
    (the second YAML document, as kfp-kubernetes writes it; KFP's API server and
    kfp.Client read it there). Nothing is written when nothing is configured, so the
    package stays one document. Returns the platform spec (or {})."""
    import yaml

    executors = kubernetes_executor_configs(_read_first_document(path), cluster)
    if not executors:
        return {}
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
    with open(path) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d is not None][:1]
    with open(path, "w") as handle:
        yaml.safe_dump_all(documents + [platform], handle, sort_keys=False)
    return platform


def _read_first_document(path: str) -> dict[str, Any]:
    import yaml

    with open(path) as handle:
        return next(d for d in yaml.safe_load_all(handle) if d is not None)


def configure_trainer(
    pipeline: tfx.dsl.Pipeline,
    cluster: cluster_configs.ClusterConfig,
    component_id: str = TRAINER_ID,
) -> tfx.dsl.Pipeline:
    """Puts the Trainer on the GPU node pool and tells `run_fn` the distribution strategy.

    `create_pipeline()` builds the Trainer itself; this hook finds it by id and attaches
    the platform config (compiled into the executor's ``resources``) and adds the runtime
    section (the distribution strategy: `breastdx_core.settings.RuntimeSettings`) to its
    ``custom_config``.
    """
    trainer = _component(pipeline, component_id)
    trainer.with_platform_config(trainer_resources(cluster))
    custom_config = json.loads(trainer.exec_properties.get(specs.CUSTOM_CONFIG_KEY) or "{}")
    custom_config["runtime"] = RuntimeSettings(
        distribution_strategy=cluster.distribution_strategy
    ).to_dict()
    training = custom_config.get("training") or {}
    pretrained_dir = training.get("pretrained_dir")
    if (
        pretrained_dir
        and os.path.isabs(pretrained_dir)
        and pretrained_dir.startswith(cluster_configs.PROJECT_DIR)
    ):
        # The converted ImageNet weights live in the image (deploy/pipeline.Dockerfile runs
        # `breastdx weights`), at the same place under the image's project folder.
        relative = os.path.relpath(pretrained_dir, cluster_configs.PROJECT_DIR).replace(os.sep, "/")
        training["pretrained_dir"] = f"{cluster.image_project_dir.rstrip('/')}/{relative}"
    trainer.exec_properties[specs.CUSTOM_CONFIG_KEY] = json.dumps(custom_config, sort_keys=True)
    return pipeline


def use_image_paths(
    pipeline: tfx.dsl.Pipeline,
    image_project_dir: str,
    project_dir: str = cluster_configs.PROJECT_DIR,
) -> tfx.dsl.Pipeline:
    """Rewrites exec properties that name a file of this source tree (the curated
    schema) to the same file in the image, where the executors read it.

    Raises:
        CompileError: such a file is not in the source tree (so not in the image either).
    """
    prefix = project_dir.rstrip(os.sep) + os.sep
    for component in pipeline.components:
        for key, value in list(component.exec_properties.items()):
            if isinstance(value, str) and value.startswith(prefix):
                if not os.path.exists(value):
                    raise CompileError(
                        f"{component.id}.{key} names {value}, which is not in the project; "
                        "the image copies the project folder, so the file must exist here"
                    )
                relative = os.path.relpath(value, project_dir).replace(os.sep, "/")
                component.exec_properties[key] = f"{image_project_dir.rstrip('/')}/{relative}"
    return pipeline


def user_code(variant: str) -> tuple[str, str]:
    """(preprocessing_fn, run_fn) dotted paths for a pipeline variant, checked to exist in
    the installed project (which the image installs the same way).

    Raises:
        CompileError: the variant is unknown or a module is not importable here.
    """
    if variant not in USER_CODE:
        raise CompileError(
            f"no cluster user code for pipeline variant {variant!r}; known: {', '.join(USER_CODE)}"
        )
    for function_path in USER_CODE[variant]:
        module = function_path.rsplit(".", 1)[0]
        if importlib.util.find_spec(module) is None:
            raise CompileError(
                f"module {module} (for {function_path}) is not importable: install the project "
                "(pip install -e .) so that the image and this checkout hold the same modules"
            )
    return USER_CODE[variant]


def build(
    config: configs.PipelineConfig, cluster: cluster_configs.ClusterConfig
) -> tfx.dsl.Pipeline:
    """`create_pipeline()` with the cluster's roots, Beam flags, Trainer resources and
    installed user code. ``config.workdir`` must already be the gs:// root."""
    preprocessing_fn, run_fn = user_code(config.variant)
    pipeline = create_pipeline(
        config,
        beam_pipeline_args=cluster.beam_pipeline_args(),
        # The cluster's orchestrator owns ML Metadata.
        metadata_connection_config=None,
        tree_fingerprint=tfx.dsl.experimental.RuntimeParameter(
            name=TREE_FINGERPRINT_PARAMETER, ptype=str, default=""
        ),
        transform_module=preprocessing_fn,
        trainer_module=run_fn,
    )
    use_image_paths(pipeline, cluster.image_project_dir)
    configure_trainer(pipeline, cluster)
    configure_steps(pipeline, cluster)
    return pipeline


def _run_runner(runner, pipeline: tfx.dsl.Pipeline) -> str:
    """Runs the runner and returns the package it wrote.

    `tfx pipeline create|update` patches the runner to write where the CLI keeps its
    packages (~/tfx/<engine>/<pipeline>/pipeline.json, set on the runner's attributes
    inside run(), as TFX's own CLI patcher does), so the path is read after run(). Nothing
    is deleted beforehand: the package `breastdx pipeline compile` wrote stays where it
    is whatever the CLI does (the runner overwrites its own file).
    """
    runner.run(pipeline)
    return os.path.join(runner._output_dir, runner._output_filename)  # pylint: disable=protected-access


def add_launcher_defaults(path: str, pipeline_root: str) -> dict[str, Any]:
    """Writes into a compiled package what KFP 2's driver needs when a run names nothing.

    - ``defaultPipelineRoot``: a run started from the KFP UI or as a recurring run carries
      no root; the driver then takes the ``kfp-launcher`` ConfigMap's, else
      ``minio://mlpipeline/v2/artifacts``, which TFX's file system cannot write.
    - a ``defaultValue`` (and ``isOptional``, as kfp's own compiler writes them) for every
      root parameter: TFX compiles a RuntimeParameter's type but drops its default, and
      the driver fails a run that leaves such a parameter out ("parent DAG does not have
      input parameter"). TFX's RuntimeParameter defaults are the values written.

    Returns ``{"defaultPipelineRoot": ..., "defaults": {name: value}}`` as written.

    Raises:
        CompileError: the root is not one TFX can write.
    """
    import yaml

    from pipeline.compat import dry_run

    dry_run.check_pipeline_root(pipeline_root, "kfp")
    defaults = RUN_PARAMETER_DEFAULTS
    is_yaml = path.endswith((".yaml", ".yml"))
    with open(path) as handle:
        # a KFP package may carry a second document (platforms.kubernetes): the spec is the first
        documents = (
            [d for d in yaml.safe_load_all(handle) if d is not None]
            if is_yaml
            else [json.load(handle)]
        )
    document = documents[0]
    spec = document.get("pipelineSpec", document)
    spec["defaultPipelineRoot"] = pipeline_root
    written = {}
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for name, parameter in declared.items():
        if "defaultValue" in parameter:
            continue
        if name not in defaults:
            raise CompileError(
                f"pipeline parameter {name!r} has no default: a run that leaves it "
                "out fails in KFP's driver: add it to RUN_PARAMETER_DEFAULTS"
            )
        parameter["defaultValue"] = defaults[name]
        parameter["isOptional"] = True
        written[name] = defaults[name]
    with open(path, "w") as handle:
        if is_yaml:
            yaml.safe_dump_all(documents, handle, sort_keys=False)
        else:
            json.dump(document, handle, indent=2, sort_keys=True)
    return {"defaultPipelineRoot": pipeline_root, "defaults": written}


def cluster_pipeline_config(
    cluster: cluster_configs.ClusterConfig, env: dict[str, str] | None = None, **overrides: Any
) -> configs.PipelineConfig:
    """The model's settings with every path under the cluster's GCS root."""
    cluster.require("gcs_root")
    return configs.load(
        env=cluster_configs.without_cluster_env(env), workdir=cluster.gcs_root, **overrides
    )


def compile_pipeline(
    config: configs.PipelineConfig,
    cluster: cluster_configs.ClusterConfig,
    output_path: str | None = None,
) -> str:
    """Compiles the pipeline to a package and returns its path.

    A ``.yaml`` path gets the bare PipelineSpec (what KFP's upload API takes; the
    pipeline root is passed when a run is created); ``.json`` the PipelineJob with the
    pipeline root in it (what Vertex AI takes).

    Raises:
        cluster_configs.ClusterConfigError: the image or GCS root is not set.
    """
    cluster.require("image", "gcs_root")
    output_path = os.path.abspath(output_path or cluster.package_for(config.pipeline_name))
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            display_name=config.pipeline_name,
            default_image=cluster.image,
            # Schema 2.1 (typed parameterValues, each task's inputs spec in its args): what
            # the KFP 2 driver reads; Vertex AI reads it too.
            use_pipeline_spec_2_1=True,
        ),
        output_dir=os.path.dirname(output_path),
        output_filename=os.path.basename(output_path),
    )
    output_path = _run_runner(runner, build(config, cluster))
    # TFX compiles the ExampleGen without its platform config (docs/compat.md).
    example_gen_resources.add_missing(output_path, cluster.step_resources())
    add_launcher_defaults(output_path, config.pipeline_root)
    if output_path.endswith(".yaml"):  # KFP; Vertex reads no platforms.kubernetes
        add_platform_spec(output_path, cluster)
    log.info(
        "compiled %s for %s (image %s, root %s)",
        output_path,
        cluster.engine,
        cluster.image,
        config.pipeline_root,
    )
    return output_path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cluster_settings = cluster_configs.load()
        path = compile_pipeline(cluster_pipeline_config(cluster_settings), cluster_settings)
    except (CompileError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(path)  # under the tfx CLI: the package where the CLI keeps it
