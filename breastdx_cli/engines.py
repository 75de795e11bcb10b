"""One implementation of the pipeline and run verbs, one object per engine.

`breastdx pipeline|run` (breastdx_cli/kfp.py) and the ``tfx`` CLI's kubeflow and vertex
engines (breastdx_cli/tfx_handler.py, installed by pipeline/compat/tfx_cli_kubeflow.py)
both call :func:`engine_for` and then the same methods: :class:`KfpEngine` speaks the
Kubeflow Pipelines 2 API (v2beta1) through kfp 2.5's client with the project's sign-in
(breastdx_cli/kfp_auth.py); :class:`VertexEngine` submits Vertex AI PipelineJobs with the
service account, labels and network of the cluster settings on every path.

Methods return plain records (:class:`Run`, :class:`Uploaded`); the callers print them.
A user's mistake (an unreachable endpoint, a refused sign-in, an unknown pipeline or run,
a missing run parameter) raises :class:`EngineError`: one line, exit 2.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from breastdx_core import cluster_configs, errors

log = logging.getLogger("breastdx")

HEALTHZ_PATH = "/apis/v2beta1/healthz"
PROBE_TIMEOUT_S = 10
PAGE_SIZE = 100
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELLED")
DESCRIPTION = "breastdx TFX pipeline (research use only, not a diagnosis)"
# Where a flag of each CLI is named in messages ("pass --param X=V" / "--runtime_parameter").
PARAM_FLAG = {"breastdx": "--param", "tfx": "--runtime_parameter"}


class EngineError(errors.UserError):
    """A user's mistake or an unreachable/refusing service: one line, exit 2."""


@dataclasses.dataclass
class Uploaded:
    pipeline_id: str
    version_id: str
    version_name: str


@dataclasses.dataclass
class Run:
    run_id: str
    name: str
    state: str
    created_at: Any = ""
    finished_at: Any = ""
    link: str = ""


@dataclasses.dataclass
class RunOptions:
    """What a person may choose for a run (or a recurring run)."""

    parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    version: str = ""  # a version name or id; empty: the newest
    caching: bool | None = None  # None: as compiled (on)
    pipeline_root: str = ""  # empty: the package's / cluster's default
    experiment: str = ""
    package: str = ""  # vertex: the compiled PipelineJob to submit
    flag_style: str = "breastdx"


def parse_parameters(items: list[str], flag: str) -> dict[str, str]:
    """``["k=v", …]`` as a dict. Raises EngineError naming ``flag`` on a malformed item."""
    parameters: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EngineError(f"{flag} takes NAME=VALUE, got {item!r}")
        parameters[key] = value
    return parameters


def pipeline_spec_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The PipelineSpec in a PipelineJob (``pipelineSpec``), in KFP's answer for a version
    uploaded with a PlatformSpec (``pipeline_spec`` beside ``platform_spec``), or as is."""
    for key in ("pipelineSpec", "pipeline_spec"):
        if key in document:
            return document[key]
    return document


def check_parameters(spec: Mapping[str, Any], parameters: Mapping[str, Any], flag: str) -> None:
    """Refuses what KFP's driver would fail the run on, before anything is submitted:
    a root parameter with no default and no value; a name the pipeline does not have."""
    spec = pipeline_spec_of(spec)
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise EngineError(
            f"the pipeline has no parameter {unknown[0]!r}; its parameters: "
            f"{', '.join(sorted(declared)) or '(none)'}"
        )
    for name, definition in sorted(declared.items()):
        if name in parameters or "defaultValue" in definition or definition.get("isOptional"):
            continue
        raise EngineError(
            f"the pipeline's parameter {name!r} has no default: pass {flag} {name}=VALUE"
        )


def without_caching(spec: dict[str, Any], enable: bool) -> dict[str, Any]:
    """A copy of a version's spec (a PipelineSpec, or KFP's ``pipeline_spec`` +
    ``platform_spec`` pair, sent back as such) with every root task's cache ``enable``."""
    spec = copy.deepcopy(spec)
    for task in pipeline_spec_of(spec).get("root", {}).get("dag", {}).get("tasks", {}).values():
        task.setdefault("cachingOptions", {})["enableCache"] = enable
    return spec


def probe(endpoint: str, headers: dict[str, str] | None = None) -> None:
    """Fails fast, in one line, when the KFP API does not answer (kfp.Client itself
    retries for half a minute and ends in a traceback). ``headers``: the sign-in."""
    url = endpoint.rstrip("/") + HEALTHZ_PATH
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=PROBE_TIMEOUT_S
        ) as response:
            response.read()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise EngineError(
                f"the Kubeflow Pipelines endpoint {endpoint} refused the request ({err.code}): "
                "sign in "
                "with --auth iap --iap-client-id CLIENT_ID (behind IAP) or --auth token "
                "(BREASTDX_KFP_AUTH, docs/cluster.md)"
            ) from None
        raise EngineError(
            f"the Kubeflow Pipelines endpoint {endpoint} answered {err.code} on {HEALTHZ_PATH}: is "
            "--endpoint / BREASTDX_KFP_ENDPOINT the KFP API (ml-pipeline-ui, port 80/8080)?"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise EngineError(
            f"cannot reach the Kubeflow Pipelines endpoint {endpoint!r} ({reason}): set "
            "--endpoint or BREASTDX_KFP_ENDPOINT (e.g. http://localhost:8080 after "
            "`kubectl port-forward -n kubeflow "
            "svc/ml-pipeline-ui 8080:80`)"
        ) from None


def api_error_message(err: Exception) -> str:
    """One line for a refusal of the KFP API (kfp_server_api.ApiException)."""
    body = (getattr(err, "body", "") or "").strip()
    try:
        detail = json.loads(body).get("message") or json.loads(body).get("error_message") or body
    except (ValueError, AttributeError):
        detail = body
    detail = " ".join(str(detail).split())[:300]
    status, reason = getattr(err, "status", "?"), getattr(err, "reason", "")
    return f"Kubeflow Pipelines answered {status} {reason}: {detail}"


def _kfp_package(package: str) -> str:
    """KFP's upload API takes a PipelineSpec (YAML); a PipelineJob JSON is unwrapped.

    Raises:
        EngineError: not a package, or it holds an executor open-source KFP refuses.
    """
    from pipeline.compat import dry_run

    try:
        refused = dry_run.refused_executors(dry_run.load_package(package)[0], "kfp")
    except (dry_run.DryRunError, KeyError, ValueError, OSError) as err:
        raise EngineError(f"{package} is not a pipeline package KFP can take: {err}") from None
    if refused:
        raise EngineError(
            f"{package}: Kubeflow Pipelines refuses {refused[0]}; recompile with "
            "`breastdx pipeline compile` (this project's packages hold no such executor)"
        )
    if package.endswith((".yaml", ".yml")):
        return package
    import yaml

    with open(package) as f:
        job = json.load(f)
    target = os.path.splitext(package)[0] + ".yaml"
    with open(target, "w") as f:
        yaml.safe_dump(job.get("pipelineSpec", job), f, sort_keys=True)
    return target


def _load_spec(package: str) -> dict[str, Any]:
    import yaml

    try:
        with open(package) as f:
            document = yaml.safe_load(f) if package.endswith((".yaml", ".yml")) else json.load(f)
    except (OSError, ValueError) as err:
        raise EngineError(f"cannot read the pipeline package {package}: {err}") from None
    return document


def _raise(err: Exception):
    raise err


class KfpEngine:
    """Kubeflow Pipelines 2 through kfp 2.5's client (REST v2beta1)."""

    name = "kfp"

    def __init__(self, cluster: cluster_configs.ClusterConfig):
        self.cluster = cluster
        self._client = None

    # --- connection -----------------------------------------------------------------
    def check(self) -> None:
        """Raises ClusterConfigError naming what the engine needs and does not have."""
        self.cluster.require("kfp_endpoint")

    @property
    def client(self):
        if self._client is None:
            self.cluster.require("kfp_endpoint")
            from breastdx_cli import kfp_auth

            sign_in = kfp_auth.credentials(self.cluster)
            probe(self.cluster.kfp_endpoint, sign_in.header())
            import kfp  # deferred: a second of imports that `--help` should not pay

            logging.getLogger("kfp").setLevel(logging.WARNING)
            self._client = kfp.Client(
                host=self.cluster.kfp_endpoint,
                namespace=self.cluster.kfp_namespace,
                **sign_in.client_kwargs,
            )
        return self._client

    def _call(self, what: str, function, *args, not_found: str = "", **kwargs):
        """Calls the client; 404 becomes ``not_found`` (or ``what`` not found), other
        refusals one line."""
        import kfp_server_api

        try:
            return function(*args, **kwargs)
        except kfp_server_api.ApiException as err:
            if err.status == 404:
                raise EngineError(
                    not_found or f"{what} not found on {self.cluster.kfp_endpoint}"
                ) from None
            if err.status in (401, 403):
                raise EngineError(
                    f"Kubeflow Pipelines refused the sign-in ({err.status}) for {what}: check "
                    "BREASTDX_KFP_AUTH and its token (docs/cluster.md)"
                ) from None
            raise EngineError(api_error_message(err)) from None

    def link(self, kind: str, object_id: str) -> str:
        return f"{self.cluster.kfp_endpoint.rstrip('/')}/#/{kind}/details/{object_id}"

    # --- pipelines ------------------------------------------------------------------
    def pipeline_id(self, name: str, required: bool = True) -> str | None:
        pipeline_id = self._call(f"pipeline {name!r}", self.client.get_pipeline_id, name)
        if not pipeline_id and required:
            raise EngineError(
                f"no pipeline named {name!r} on {self.cluster.kfp_endpoint}: check the pipeline "
                "name (BREASTDX_TASK / --pipeline-name), or upload it first with "
                "`tfx pipeline create` / `breastdx pipeline create`"
            )
        return pipeline_id

    def upload(self, name: str, package: str, update: bool) -> Uploaded:
        """Uploads ``package`` as a new pipeline (with a dated first version) or, with
        ``update``, as a new version ``<pipeline>_<UTC timestamp>`` of the existing one."""
        package = _kfp_package(package)
        if update:
            pipeline_id = self.pipeline_id(name)
        else:
            if self.pipeline_id(name, required=False):
                raise EngineError(
                    f"a pipeline named {name!r} exists already: use `tfx pipeline update` / "
                    "`breastdx pipeline update`"
                )
            uploaded = self._call(
                "the pipeline upload",
                self.client.upload_pipeline,
                package,
                pipeline_name=name,
                description=DESCRIPTION,
            )
            pipeline_id = uploaded.pipeline_id
            # Runs of a pipeline are grouped in an experiment of its name (the tfx CLI's rule).
            self._call(
                "the experiment", self.client.create_experiment, self.cluster.experiment or name
            )
        version = self._upload_version(name, package, pipeline_id)
        return Uploaded(pipeline_id, version.pipeline_version_id, version.display_name)

    def _upload_version(self, name: str, package: str, pipeline_id: str):
        """A version named ``<pipeline>_<UTC timestamp>``; KFP refuses a name twice (409),
        so a second upload within the same second gets ``-2``, ``-3``…"""
        import kfp_server_api

        base = cluster_configs.version_name(name)
        for attempt in range(1, 10):
            version_name = base if attempt == 1 else f"{base}-{attempt}"
            try:
                return self.client.upload_pipeline_version(
                    package, version_name, pipeline_id=pipeline_id
                )
            except kfp_server_api.ApiException as err:
                if err.status != 409:
                    return self._call(f"pipeline {name!r}", _raise, err)
        raise EngineError(f"pipeline {name!r}: versions {base} to {base}-9 exist already")

    def list_pipelines(self) -> list[list[str]]:
        response = self._call("the pipelines", self.client.list_pipelines, page_size=PAGE_SIZE)
        return [
            [p.pipeline_id, p.display_name, str(p.created_at)] for p in response.pipelines or []
        ]

    def delete_pipeline(self, name: str) -> str:
        """Deletes the pipeline and its versions (KFP 2 refuses a pipeline with versions)."""
        pipeline_id = self.pipeline_id(name)
        while True:
            versions = (
                self._call(
                    f"pipeline {name!r}",
                    self.client.list_pipeline_versions,
                    pipeline_id,
                    page_size=PAGE_SIZE,
                ).pipeline_versions
                or []
            )
            if not versions:
                break
            for version in versions:
                self._call(
                    "the version",
                    self.client.delete_pipeline_version,
                    pipeline_id,
                    version.pipeline_version_id,
                )
        self._call(f"pipeline {name!r}", self.client.delete_pipeline, pipeline_id)
        return pipeline_id

    def version(self, pipeline_id: str, name: str, wanted: str = ""):
        """The newest version, or the one whose name or id is ``wanted``."""
        if not wanted:
            versions = self._call(
                f"pipeline {name!r}",
                self.client.list_pipeline_versions,
                pipeline_id,
                page_size=1,
                sort_by="created_at desc",
            ).pipeline_versions
            if not versions:
                raise EngineError(f"pipeline {name!r} has no version: run `tfx pipeline update`")
            return versions[0]
        token = ""
        while True:
            response = self._call(
                f"pipeline {name!r}",
                self.client.list_pipeline_versions,
                pipeline_id,
                page_size=PAGE_SIZE,
                page_token=token,
            )
            for version in response.pipeline_versions or []:
                if wanted in (version.display_name, version.pipeline_version_id):
                    return version
            token = response.next_page_token
            if not token:
                raise EngineError(
                    f"pipeline {name!r} has no version {wanted!r}: list them in the KFP UI, "
                    "or leave --version out for the newest"
                )

    # --- runs -----------------------------------------------------------------------
    def _run_source(self, name: str, options: RunOptions) -> dict[str, Any]:
        """The version reference (or, with caching switched, its spec inline: KFP applies
        a caching choice only to a spec it is sent) and the checked runtime config."""
        import kfp_server_api

        if options.pipeline_root:  # refused before anything is submitted
            from pipeline.compat import dry_run

            dry_run.check_pipeline_root(options.pipeline_root, "kfp")
        pipeline_id = self.pipeline_id(name)
        version = self.version(pipeline_id, name, options.version)
        spec = version.pipeline_spec or {}
        if spec:  # KFP answers every version with its spec
            check_parameters(spec, options.parameters, PARAM_FLAG[options.flag_style])
        source: dict[str, Any] = {
            "runtime_config": kfp_server_api.V2beta1RuntimeConfig(
                parameters=dict(options.parameters), pipeline_root=options.pipeline_root or None
            )
        }
        if options.caching is None:
            source["pipeline_version_reference"] = kfp_server_api.V2beta1PipelineVersionReference(
                pipeline_id=pipeline_id, pipeline_version_id=version.pipeline_version_id
            )
        else:
            source["pipeline_spec"] = without_caching(spec, options.caching)
        return source

    def _experiment_id(self, options: RunOptions, name: str) -> str:
        experiment = self._call(
            "the experiment",
            self.client.create_experiment,
            options.experiment or self.cluster.experiment or name,
        )
        return experiment.experiment_id

    def _record(self, run) -> Run:
        return Run(
            run.run_id,
            run.display_name,
            str(run.state),
            run.created_at,
            run.finished_at,
            self.link("runs", run.run_id),
        )

    def create_run(self, name: str, options: RunOptions) -> Run:
        import kfp_server_api

        body = kfp_server_api.V2beta1Run(
            experiment_id=self._experiment_id(options, name),
            display_name=cluster_configs.version_name(name),
            **self._run_source(name, options),
        )
        run = self._call(
            f"pipeline {name!r}",
            self.client._run_api.create_run,  # pylint: disable=protected-access
            body=body,
        )
        return self._record(run)

    def list_runs(self, name: str = "", limit: int = 20) -> list[Run]:
        kwargs: dict[str, Any] = {"page_size": limit, "sort_by": "created_at desc"}
        pipeline_id = ""
        if name:
            pipeline_id = self.pipeline_id(name)
            try:
                experiment = self._call(
                    "the experiment",
                    self.client.get_experiment,
                    experiment_name=self.cluster.experiment or name,
                )
            except EngineError:
                raise
            except ValueError:  # kfp's answer for an experiment that does not exist: no runs yet
                return []
            kwargs["experiment_id"] = experiment.experiment_id
        response = self._call("the runs", self.client.list_runs, **kwargs)
        return [
            self._record(run)
            for run in response.runs or []
            if not pipeline_id or self._of_pipeline(run, pipeline_id, name)
        ]

    @staticmethod
    def _of_pipeline(run, pipeline_id: str, name: str) -> bool:
        """A run of the pipeline: its version reference, or (a run sent with its spec
        inline, --no-cache) its name, which is ``<pipeline>_<timestamp>``."""
        reference = run.pipeline_version_reference
        if reference is not None and reference.pipeline_id:
            return reference.pipeline_id == pipeline_id
        return (run.display_name or "").startswith(f"{name}_")

    def _no_run(self, run_id: str) -> str:
        return (
            f"no run with id {run_id!r} on {self.cluster.kfp_endpoint}: list them with "
            "`tfx run list` / `breastdx run list`"
        )

    def get_run(self, run_id: str) -> Run:
        return self._record(
            self._call(
                f"run {run_id!r}", self.client.get_run, run_id, not_found=self._no_run(run_id)
            )
        )

    def wait_run(self, run_id: str, timeout: int) -> Run:
        self.get_run(run_id)
        try:
            run = self.client.wait_for_run_completion(run_id, timeout=timeout)
        except TimeoutError:
            raise EngineError(
                f"run {run_id} did not finish within {timeout} s (it goes on; wait again)"
            ) from None
        return self._record(run)

    def terminate_run(self, run_id: str) -> None:
        self._call(
            f"run {run_id!r}", self.client.terminate_run, run_id, not_found=self._no_run(run_id)
        )

    def retry_run(self, run_id: str) -> None:
        self._call(
            f"run {run_id!r}",
            self.client._run_api.retry_run,  # pylint: disable=protected-access
            run_id,
            not_found=self._no_run(run_id),
        )

    def delete_run(self, run_id: str) -> None:
        self._call(
            f"run {run_id!r}", self.client.delete_run, run_id, not_found=self._no_run(run_id)
        )

    # --- recurring runs -------------------------------------------------------------
    def create_recurring(
        self, name: str, cron: str, options: RunOptions, max_concurrency: int = 1
    ) -> Run:
        import kfp_server_api

        source = self._run_source(name, options)
        body = kfp_server_api.V2beta1RecurringRun(
            display_name=f"{name}-recurring",
            description=DESCRIPTION,
            experiment_id=self._experiment_id(options, name),
            trigger=kfp_server_api.V2beta1Trigger(
                cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron)
            ),
            max_concurrency=str(max_concurrency),
            mode="ENABLE",
            no_catchup=True,
            **source,
        )
        job = self._call(
            f"pipeline {name!r}",
            self.client._recurring_run_api.create_recurring_run,  # pylint: disable=protected-access
            body=body,
        )
        return Run(
            job.recurring_run_id,
            job.display_name,
            str(job.status),
            job.created_at,
            "",
            self.link("recurringrun", job.recurring_run_id),
        )

    def list_recurring(self, limit: int = 20) -> list[Run]:
        response = self._call(
            "the recurring runs", self.client.list_recurring_runs, page_size=limit
        )
        return [
            Run(j.recurring_run_id, j.display_name, str(j.status), j.created_at)
            for j in response.recurring_runs or []
        ]

    def set_recurring(self, recurring_id: str, action: str) -> None:
        """``action``: enable, disable or delete."""
        function = {
            "enable": self.client.enable_recurring_run,
            "disable": self.client.disable_recurring_run,
            "delete": self.client.delete_recurring_run,
        }[action]
        self._call(f"recurring run {recurring_id!r}", function, recurring_id)


class VertexEngine:
    """Vertex AI Pipelines: no pipeline registry; a run carries its compiled package."""

    name = "vertex"

    def __init__(self, cluster: cluster_configs.ClusterConfig):
        self.cluster = cluster
        self._aiplatform = None

    def check(self) -> None:
        self.cluster.require("vertex_project")

    @property
    def aiplatform(self):
        if self._aiplatform is None:
            self.cluster.require("vertex_project")
            from google.cloud import aiplatform  # deferred: heavy

            aiplatform.init(
                project=self.cluster.vertex_project, location=self.cluster.vertex_region
            )
            self._aiplatform = aiplatform
        return self._aiplatform

    def _job(self, run_id: str):
        from google.api_core import exceptions

        try:
            return self.aiplatform.PipelineJob.get(run_id)
        except (exceptions.NotFound, ValueError) as err:
            raise EngineError(f"no Vertex AI pipeline run {run_id!r} ({str(err)[:200]})") from None

    @staticmethod
    def _record(job) -> Run:
        return Run(
            job.resource_name,
            job.display_name,
            job.state.name.replace("PIPELINE_STATE_", ""),
            job.create_time,
            getattr(job._gca_resource, "end_time", ""),
        )  # pylint: disable=protected-access

    def submission(self, name: str, options: RunOptions) -> dict[str, Any]:
        """The PipelineJob's arguments and ``submit()``'s: what every Vertex path sends."""
        package = os.path.abspath(options.package or self.cluster.package_for(name))
        if not os.path.exists(package):
            raise EngineError(
                f"no compiled package at {package}: run `tfx pipeline create --engine vertex` "
                "or `breastdx pipeline compile --engine vertex`"
            )
        check_parameters(_load_spec(package), options.parameters, PARAM_FLAG[options.flag_style])
        job = {
            "display_name": name,
            "template_path": package,
            "parameter_values": dict(options.parameters),
            "enable_caching": options.caching,
            "labels": dict(self.cluster.vertex_labels_dict()),
        }
        if options.pipeline_root:
            job["pipeline_root"] = options.pipeline_root
        submit = {
            "service_account": self.cluster.vertex_service_account or None,
            "network": self.cluster.vertex_network or None,
        }
        return {"job": job, "submit": submit}

    def create_run(self, name: str, options: RunOptions) -> Run:
        arguments = self.submission(name, options)
        job = self.aiplatform.PipelineJob(**arguments["job"])
        job.submit(**arguments["submit"])
        return self._record(job)

    def list_runs(self, name: str = "", limit: int = 20) -> list[Run]:
        jobs = self.aiplatform.PipelineJob.list(
            filter=f'display_name="{name}"' if name else None, order_by="create_time desc"
        )
        return [self._record(job) for job in jobs[:limit]]

    def get_run(self, run_id: str) -> Run:
        return self._record(self._job(run_id))

    def wait_run(self, run_id: str, timeout: int) -> Run:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.state in TERMINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise EngineError(
                    f"run {run_id} did not finish within {timeout} s (it goes on; wait again)"
                )
            time.sleep(30)

    def terminate_run(self, run_id: str) -> None:
        self._job(run_id).cancel()

    def delete_run(self, run_id: str) -> None:
        self._job(run_id).delete()

    def retry_run(self, run_id: str) -> None:
        raise EngineError(
            "Vertex AI Pipelines has no retry: create a new run (cached steps are reused)"
        )

    def create_recurring(
        self, name: str, cron: str, options: RunOptions, max_concurrency: int = 1
    ) -> Run:
        arguments = self.submission(name, options)
        job = self.aiplatform.PipelineJob(**arguments["job"])
        schedule = job.create_schedule(
            display_name=f"{name}-recurring",
            cron=cron,
            max_concurrent_run_count=max_concurrency,
            service_account=arguments["submit"]["service_account"],
            network=arguments["submit"]["network"],
        )
        return Run(
            schedule.resource_name,
            f"{name}-recurring",
            str(schedule.state.name),
            schedule.create_time,
        )

    def list_recurring(self, limit: int = 20) -> list[Run]:
        schedules = self.aiplatform.PipelineJobSchedule.list(order_by="create_time desc")
        return [
            Run(s.resource_name, s.display_name, s.state.name, s.create_time)
            for s in schedules[:limit]
        ]

    def set_recurring(self, recurring_id: str, action: str) -> None:
        schedule = self.aiplatform.PipelineJobSchedule.get(recurring_id)
        {"enable": schedule.resume, "disable": schedule.pause, "delete": schedule.delete}[action]()

    def list_pipelines(self) -> list[list[str]]:
        raise EngineError("Vertex AI Pipelines keeps no uploaded pipelines: list runs instead")

    def delete_pipeline(self, name: str) -> str:
        raise EngineError("Vertex AI Pipelines keeps no uploaded pipelines: nothing to delete")


ENGINES = {"kfp": KfpEngine, "vertex": VertexEngine}


def engine_for(cluster: cluster_configs.ClusterConfig):
    """The engine object for ``cluster.engine``."""
    return ENGINES[cluster.engine](cluster)
