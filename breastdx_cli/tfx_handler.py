"""The ``tfx`` CLI's kubeflow and vertex engines, on this project's engines.

`tfx pipeline create|update|compile|delete|list` and `tfx run create|list|status|terminate|
delete` with ``--engine kubeflow`` (a Kubeflow Pipelines 2 API, v2beta1) or ``--engine
vertex`` (Vertex AI Pipelines). TFX's handler factory imports
``tfx.tools.cli.handler.kubeflow_handler`` / ``vertex_handler`` and builds their
``KubeflowHandler`` / ``VertexHandler``; pipeline/compat/tfx_cli_kubeflow.py answers those
imports with this module. The work is done by breastdx_cli/engines.py, the same code as
`breastdx pipeline|run`.

Settings: the tfx CLI's flags (``--endpoint``, ``--iap_client_id``, ``--namespace``,
``--project``, ``--region``, ``--runtime_parameter``) over the ``BREASTDX_*`` variables
(breastdx_core/cluster_configs.py: the sign-in, the GCS root, the Vertex service account,
labels and network). A user's mistake ends the command with ``error: <one line>`` and
exit status 2 (click would print a traceback for any exception, so every verb here turns
`BreastdxError` into that line).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import click
from tfx.tools.cli import labels
from tfx.tools.cli.handler import base_handler, kubeflow_v2_dag_runner_patcher

from breastdx_cli import engines
from breastdx_core import cluster_configs, errors

# The tfx CLI's engine names and this project's (BREASTDX_ENGINE).
PROJECT_ENGINE = {labels.KUBEFLOW_ENGINE: "kfp", labels.VERTEX_ENGINE: "vertex"}
# The package in the CLI's folder: KFP's upload takes a PipelineSpec in YAML, with the
# PlatformSpec (node selector, tolerations, pull secrets) as its second document, which
# kubeflow_runner adds to .yaml packages only; Vertex takes TFX's PipelineJob JSON.
PACKAGE_NAME = {"kfp": "pipeline.yaml", "vertex": kubeflow_v2_dag_runner_patcher.OUTPUT_FILENAME}
RUN_HEADERS = ["pipeline_name", "run_id", "status", "created_at", "link"]


class _Patcher(kubeflow_v2_dag_runner_patcher.KubeflowV2DagRunnerPatcher):
    """TFX's patcher, writing the CLI's copy under ``filename`` (TFX's own copy is JSON)."""

    def __init__(self, filename: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._filename = filename

    def _before_run(self, runner, pipeline, context) -> None:
        super()._before_run(runner, pipeline, context)
        if self._prepare_dir_fn is not None:
            runner._output_filename = self._filename  # pylint: disable=protected-access
            path = os.path.join(runner._output_dir, self._filename)  # pylint: disable=protected-access
            context[self.OUTPUT_FILE_PATH] = path


def _one_line(method):
    """A verb that ends a user's mistake with one line on stderr and exit status 2."""

    @functools.wraps(method)
    def verb(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except errors.BreastdxError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)

    return verb


class _Handler(base_handler.BaseHandler):
    """The verbs of both engines; the subclasses differ only where the engines do."""

    def __init__(self, flags_dict: dict[str, Any]):
        super().__init__(flags_dict)
        self.engine_name = PROJECT_ENGINE[flags_dict[labels.ENGINE_FLAG]]

    # --- settings ---------------------------------------------------------------------
    def cluster(self) -> cluster_configs.ClusterConfig:
        flags = self.flags_dict
        iap_client_id = flags.get(labels.IAP_CLIENT_ID) or None
        return cluster_configs.load(
            engine=self.engine_name,
            kfp_endpoint=flags.get(labels.ENDPOINT) or None,
            kfp_namespace=flags.get(labels.NAMESPACE) or None,
            kfp_auth="iap" if iap_client_id else None,
            kfp_iap_client_id=iap_client_id,
            vertex_project=flags.get(labels.GCP_PROJECT_ID) or None,
            vertex_region=flags.get(labels.GCP_REGION) or None,
        )

    def engine(self):
        engine = engines.engine_for(self.cluster())
        engine.check()
        return engine

    @contextlib.contextmanager
    def _compile_env(self) -> Iterator[None]:
        """BREASTDX_ENGINE for the pipeline file while it compiles: the package
        `--engine vertex` writes must ask for Vertex's accelerator, not Kubernetes'."""
        given = os.environ.get("BREASTDX_ENGINE")
        if given and given != self.engine_name:
            raise engines.EngineError(
                f"BREASTDX_ENGINE={given} contradicts "
                f"--engine {self.flags_dict[labels.ENGINE_FLAG]}: "
                "unset BREASTDX_ENGINE or pass the matching --engine"
            )
        os.environ["BREASTDX_ENGINE"] = self.engine_name
        try:
            yield
        finally:
            if given is None:
                os.environ.pop("BREASTDX_ENGINE", None)

    def _pipeline_dir(self, pipeline_name: str) -> str:
        return os.path.join(self._handler_home_dir, pipeline_name)

    def _package(self, pipeline_name: str) -> str:
        return os.path.join(self._pipeline_dir(pipeline_name), PACKAGE_NAME[self.engine_name])

    def _compile(self, prepare_dir) -> dict[str, Any]:
        build_image_fn = None
        if self.flags_dict.get(labels.BUILD_IMAGE):  # TFX's own image build (needs Docker)
            from tfx.tools.cli.container_builder import builder

            def build_image_fn(image: str) -> str:
                return builder.build(
                    target_image=image, base_image=self.flags_dict.get(labels.BASE_IMAGE)
                )

        patcher = _Patcher(
            PACKAGE_NAME[self.engine_name],
            call_real_run=True,
            build_image_fn=build_image_fn,
            prepare_dir_fn=prepare_dir,
        )
        with self._compile_env():
            context = self.execute_dsl(patcher)
        return {
            "name": context[patcher.PIPELINE_NAME],
            "package": context[patcher.OUTPUT_FILE_PATH],
        }

    def _prepare_dir(self, pipeline_name: str) -> str:
        """The folder the CLI keeps the pipeline's package in, emptied."""
        folder = self._pipeline_dir(pipeline_name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        return folder

    def _run_options(self, pipeline_name: str) -> engines.RunOptions:
        cluster = self.cluster()
        root = f"{cluster.gcs_root}/pipelines/{pipeline_name}" if cluster.gcs_root else ""
        return engines.RunOptions(
            parameters=dict(self.flags_dict.get(labels.RUNTIME_PARAMETER) or {}),
            pipeline_root=root,
            package=self._package(pipeline_name),
            flag_style="tfx",
        )

    def _print_runs(self, pipeline_name: str, runs: list[engines.Run]) -> None:
        if not runs:
            click.echo("No runs found.")
            return
        rows = [[pipeline_name, run.run_id, run.state, run.created_at, run.link] for run in runs]
        click.echo(self._format_table(RUN_HEADERS, rows))

    # --- verbs ------------------------------------------------------------------------
    @_one_line
    def compile_pipeline(self) -> None:
        compiled = self._compile(prepare_dir=None)
        click.echo(f"Pipeline {compiled['name']} compiled successfully.")
        click.echo(f"Pipeline package path: {compiled['package']}")

    @_one_line
    def get_schema(self) -> None:
        raise engines.EngineError(
            "`tfx pipeline schema` has nothing to fetch: this pipeline's schema is curated in the "
            "source tree (breastdx_core/schemas/), not inferred by a SchemaGen run"
        )

    @_one_line
    def update_pipeline(self) -> None:
        self.create_pipeline(update=True)

    @_one_line
    def create_run(self) -> None:
        pipeline_name = self.flags_dict[labels.PIPELINE_NAME]
        run = self.engine().create_run(pipeline_name, self._run_options(pipeline_name))
        click.echo(f"Run created for pipeline: {pipeline_name}")
        self._print_runs(pipeline_name, [run])

    @_one_line
    def list_runs(self) -> None:
        pipeline_name = self.flags_dict[labels.PIPELINE_NAME]
        self._print_runs(pipeline_name, self.engine().list_runs(pipeline_name))

    @_one_line
    def get_run(self) -> None:
        run = self.engine().get_run(self.flags_dict[labels.RUN_ID])
        self._print_runs(self.flags_dict.get(labels.PIPELINE_NAME) or run.name, [run])

    @_one_line
    def terminate_run(self) -> None:
        self.engine().terminate_run(self.flags_dict[labels.RUN_ID])
        click.echo("Run terminated.")

    @_one_line
    def delete_run(self) -> None:
        self.engine().delete_run(self.flags_dict[labels.RUN_ID])
        click.echo("Run deleted.")


class KubeflowHandler(_Handler):
    """``--engine kubeflow``: the pipeline registry is the KFP API's."""

    @_one_line
    def create_pipeline(self, update: bool = False) -> None:
        engine = self.engine()
        _ = engine.client  # reach the API and sign in before the compile
        compiled = self._compile(prepare_dir=self._prepare_dir)
        uploaded = engine.upload(compiled["name"], compiled["package"], update=update)
        click.echo(
            f'Pipeline "{compiled["name"]}" {"updated" if update else "created"} successfully.'
        )
        click.echo(
            f"Pipeline id {uploaded.pipeline_id}, version {uploaded.version_name} "
            f"(id {uploaded.version_id})."
        )
        click.echo(
            "Please access the pipeline detail page at "
            + engine.link("pipelines", uploaded.pipeline_id)
        )

    @_one_line
    def list_pipelines(self) -> None:
        rows = self.engine().list_pipelines()
        if not rows:
            click.echo("No pipelines to display.")
            return
        click.echo(self._format_table(["pipeline_id", "pipeline_name", "created_at"], rows))

    @_one_line
    def delete_pipeline(self) -> None:
        pipeline_name = self.flags_dict[labels.PIPELINE_NAME]
        self.engine().delete_pipeline(pipeline_name)
        shutil.rmtree(self._pipeline_dir(pipeline_name), ignore_errors=True)
        click.echo(f"Pipeline {pipeline_name} deleted successfully.")


class VertexHandler(_Handler):
    """``--engine vertex``: no registry; the CLI keeps each package in its home folder
    (~/tfx/vertex/<pipeline>/pipeline.json) and a run submits it."""

    def _prepare_dir_for(self, update: bool):
        def prepare(pipeline_name: str) -> str:
            exists = os.path.exists(self._pipeline_dir(pipeline_name))
            if update and not exists:
                raise engines.EngineError(
                    f"pipeline {pipeline_name!r} does not exist here: "
                    "create it with `tfx pipeline create --engine vertex`"
                )
            if exists and not update:
                raise engines.EngineError(
                    f"pipeline {pipeline_name!r} exists already: use "
                    "`tfx pipeline update --engine vertex`"
                )
            return self._prepare_dir(pipeline_name)

        return prepare

    @_one_line
    def create_pipeline(self, update: bool = False) -> None:
        compiled = self._compile(prepare_dir=self._prepare_dir_for(update))
        click.echo(
            f'Pipeline "{compiled["name"]}" {"updated" if update else "created"} successfully.'
        )
        click.echo(f"Pipeline package path: {compiled['package']}")

    @_one_line
    def list_pipelines(self) -> None:
        names = (
            sorted(os.listdir(self._handler_home_dir))
            if os.path.isdir(self._handler_home_dir)
            else []
        )
        click.echo("\n".join(names) if names else "No pipelines to display.")

    @_one_line
    def delete_pipeline(self) -> None:
        pipeline_name = self.flags_dict[labels.PIPELINE_NAME]
        if not os.path.isdir(self._pipeline_dir(pipeline_name)):
            raise engines.EngineError(
                f"pipeline {pipeline_name!r} does not exist in {self._handler_home_dir}"
            )
        shutil.rmtree(self._pipeline_dir(pipeline_name))
        click.echo(f"Pipeline {pipeline_name} deleted successfully.")
