"""`breastdx pipeline …` and `breastdx run …`: the tfx CLI's verbs over the KFP 2 client.

TFX 1.16's `tfx pipeline … --engine=kubeflow` imports the removed v1 runner, so these
verbs replace it: `pipeline compile|create|update|list|delete` and
`run create|list|get|wait`, against a Kubeflow Pipelines 2 endpoint (`kfp.Client`)
or, with ``--engine vertex``, Vertex AI Pipelines (`aiplatform.PipelineJob`).

`breastdx_cli/main.py` calls `add_parsers(subparsers)`; each verb is a function of the
parsed arguments that returns the exit status. Settings come from
`breastdx_core.cluster_configs.load()` (``BREASTDX_*`` variables, then the flags here).
A setting the cluster needs and does not have, an endpoint that does not answer or a
pipeline that does not exist ends the command with one line that names what to fix.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Optional

from breastdx_core import cluster_configs
from pipeline.dry_run import DryRunError
from breastdx_core import errors

log = logging.getLogger("breastdx")

HEALTHZ_PATH = "/apis/v2beta1/healthz"
PROBE_TIMEOUT_S = 10
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELLED")


class CliError(errors.UserError):
    """A user's mistake or an unreachable service; printed as one line, exit 2."""


# --- parsers --------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (defaults: BREASTDX_* variables, see breastdx_core/cluster_configs.py)")
    group.add_argument("--engine", choices=cluster_configs.ENGINES, default=None,
                       help="Kubeflow Pipelines 2 (kfp) or Vertex AI Pipelines (vertex); default: BREASTDX_ENGINE or kfp")
    group.add_argument("--endpoint", dest="kfp_endpoint", default=None,
                       help="KFP 2 API endpoint, e.g. http://localhost:8080 (BREASTDX_KFP_ENDPOINT)")
    group.add_argument("--namespace", dest="kfp_namespace", default=None,
                       help="KFP namespace (multi-user installs; BREASTDX_KFP_NAMESPACE, default kubeflow)")
    group.add_argument("--project", dest="vertex_project", default=None,
                       help="Google Cloud project for Vertex AI (BREASTDX_VERTEX_PROJECT)")
    group.add_argument("--region", dest="vertex_region", default=None,
                       help="Vertex AI region (BREASTDX_VERTEX_REGION, default us-central1)")
    group.add_argument("--pipeline-name", default=None,
                       help="pipeline name (default: breastdx-<task>, from BREASTDX_TASK)")
    group.add_argument("--auth", dest="kfp_auth", choices=cluster_configs.KFP_AUTH_MODES, default=None,
                       help="sign-in to the KFP API: none, iap (Google ID token for --iap-client-id) or token "
                            "(BREASTDX_KFP_TOKEN / --token-file); default BREASTDX_KFP_AUTH or none")
    group.add_argument("--iap-client-id", dest="kfp_iap_client_id", default=None,
                       help="OAuth client id of the IAP in front of KFP (BREASTDX_KFP_IAP_CLIENT_ID)")
    group.add_argument("--token-file", dest="kfp_token_file", default=None,
                       help="file holding the bearer token for --auth token (BREASTDX_KFP_TOKEN_FILE)")


def _compile_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compile")
    group.add_argument("--image", default=None, help="pipeline image (BREASTDX_IMAGE)")
    group.add_argument("--gcs-root", dest="gcs_root", default=None, help="gs://BUCKET/PREFIX (BREASTDX_GCS_ROOT)")
    group.add_argument("--package", dest="package_path", default=None,
                       help="compiled package path (.yaml: PipelineSpec; .json: PipelineJob); "
                            "default build/<pipeline>.yaml for kfp, .json for vertex")
    group.add_argument("--skip-compile", action="store_true",
                       help="upload the existing --package instead of compiling (CI compiles once)")


def add_parsers(subparsers: Any) -> None:
    """Adds the `pipeline` and `run` verbs to the `breastdx` CLI's subparsers."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    pipeline = subparsers.add_parser("pipeline", help="compile and upload the pipeline to Kubeflow / Vertex AI",
                                     formatter_class=fmt)
    pipeline_verbs = pipeline.add_subparsers(dest="pipeline_verb", metavar="VERB", required=True)

    p = pipeline_verbs.add_parser("compile", help="compile to a KFP 2 / Vertex package", formatter_class=fmt)
    _common(p)
    _compile_flags(p)
    p.set_defaults(func=pipeline_compile)

    p = pipeline_verbs.add_parser("create", help="compile and upload a new pipeline", formatter_class=fmt)
    _common(p)
    _compile_flags(p)
    p.set_defaults(func=pipeline_create)

    p = pipeline_verbs.add_parser("update", help="compile and upload a new version <pipeline>_<UTC timestamp>",
                                  formatter_class=fmt)
    _common(p)
    _compile_flags(p)
    p.set_defaults(func=pipeline_update)

    p = pipeline_verbs.add_parser("list", help="list uploaded pipelines", formatter_class=fmt)
    _common(p)
    p.set_defaults(func=pipeline_list)

    p = pipeline_verbs.add_parser("delete", help="delete a pipeline and its versions", formatter_class=fmt)
    _common(p)
    p.set_defaults(func=pipeline_delete)

    p = pipeline_verbs.add_parser(
        "dry-run", formatter_class=fmt,
        help="run a compiled package here, task by task, as the engine would (pipeline/dry_run.py)")
    _common(p)
    p.add_argument("--package", dest="package_path", default=None,
                   help="compiled package (default: build/<pipeline>.yaml for kfp, .json for vertex)")
    p.add_argument("--storage", default=None,
                   help="local folder standing in for gs:// (default: <workdir>/dry-run/gcs)")
    p.add_argument("--pipeline-root", default=None,
                   help="the engine's pipeline root (default: <BREASTDX_GCS_ROOT>/pipelines/<pipeline>)")
    p.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE", help="a run parameter")
    p.set_defaults(func=pipeline_dry_run)

    run = subparsers.add_parser("run", help="start and follow pipeline runs on Kubeflow / Vertex AI",
                                formatter_class=fmt)
    run_verbs = run.add_subparsers(dest="run_verb", metavar="VERB", required=True)

    p = run_verbs.add_parser("create", help="run the latest version of the pipeline", formatter_class=fmt)
    _common(p)
    p.add_argument("--gcs-root", dest="gcs_root", default=None,
                   help="gs://BUCKET/PREFIX; the run's pipeline root is <root>/pipelines/<pipeline>")
    p.add_argument("--package", dest="package_path", default=None, help="vertex: the compiled package to submit")
    p.add_argument("--experiment", default=None, help="KFP experiment (BREASTDX_EXPERIMENT, default breastdx)")
    p.add_argument("--tree-fingerprint", default="auto",
                   help="the tree_fingerprint run parameter (ImageExampleGen's cache key on KFP): auto = a digest "
                        "of every file under the image root, computed here; none = leave it empty")
    p.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeded")
    p.add_argument("--timeout", type=int, default=6 * 3600, help="seconds to wait with --wait")
    p.set_defaults(func=run_create)

    p = run_verbs.add_parser("list", help="list runs", formatter_class=fmt)
    _common(p)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=run_list)

    p = run_verbs.add_parser("get", help="show one run", formatter_class=fmt)
    _common(p)
    p.add_argument("run_id", help="KFP run id, or the Vertex PipelineJob resource name")
    p.set_defaults(func=run_get)

    p = run_verbs.add_parser("wait", help="wait for a run; exit 1 unless it succeeded", formatter_class=fmt)
    _common(p)
    p.add_argument("run_id", help="KFP run id, or the Vertex PipelineJob resource name")
    p.add_argument("--timeout", type=int, default=6 * 3600)
    p.set_defaults(func=run_wait)


# --- settings -------------------------------------------------------------------------------
_CLUSTER_FLAGS = ("engine", "kfp_endpoint", "kfp_namespace", "vertex_project", "vertex_region", "image",
                  "gcs_root", "package_path", "experiment", "kfp_auth", "kfp_iap_client_id", "kfp_token_file")


def cluster_settings(args: argparse.Namespace) -> cluster_configs.ClusterConfig:
    return cluster_configs.load(**{name: getattr(args, name, None) for name in _CLUSTER_FLAGS})


def pipeline_name(args: argparse.Namespace) -> str:
    """The pipeline's name without importing TFX: the flag, BREASTDX_PIPELINE_NAME, or
    breastdx-<BREASTDX_TASK> (configs.PipelineConfig's own rule)."""
    from breastdx_core import configs  # light: no TensorFlow

    if getattr(args, "pipeline_name", None):
        return args.pipeline_name
    env = cluster_configs.without_cluster_env()
    return configs.load(env=env).pipeline_name


def _pipeline_root(cluster: cluster_configs.ClusterConfig, name: str) -> str:
    # Must match configs.PipelineConfig.pipeline_root with workdir = the GCS root.
    cluster.require("gcs_root")
    return f"{cluster.gcs_root}/pipelines/{name}"


# --- KFP ------------------------------------------------------------------------------------
def probe(endpoint: str, headers: Optional[Dict[str, str]] = None) -> None:
    """Fails fast, in one line, when the KFP API does not answer (kfp.Client itself
    retries for half a minute and ends in a traceback). ``headers``: the sign-in."""
    url = endpoint.rstrip("/") + HEALTHZ_PATH
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=PROBE_TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise CliError(f"the Kubeflow Pipelines endpoint {endpoint} refused the request ({err.code}): sign in "
                           "with --auth iap --iap-client-id CLIENT_ID (behind IAP) or --auth token "
                           "(BREASTDX_KFP_AUTH, docs/cluster.md)") from None
        raise CliError(f"the Kubeflow Pipelines endpoint {endpoint} answered {err.code} on {HEALTHZ_PATH}: "
                       "is --endpoint / BREASTDX_KFP_ENDPOINT the KFP API (ml-pipeline-ui, port 80/8080)?") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise CliError(f"cannot reach the Kubeflow Pipelines endpoint {endpoint!r} ({reason}): set --endpoint or "
                       "BREASTDX_KFP_ENDPOINT (e.g. http://localhost:8080 after `kubectl port-forward -n kubeflow "
                       "svc/ml-pipeline-ui 8080:80`)") from None


def kfp_client(cluster: cluster_configs.ClusterConfig):
    cluster.require("kfp_endpoint")
    from breastdx_cli import kfp_auth

    sign_in = kfp_auth.credentials(cluster)
    probe(cluster.kfp_endpoint, sign_in.header())
    import kfp  # deferred: kfp imports take a second and `breastdx --help` should not

    logging.getLogger("kfp").setLevel(logging.WARNING)
    namespace = cluster.kfp_namespace
    return kfp.Client(host=cluster.kfp_endpoint, namespace=namespace, **sign_in.client_kwargs)


def _pipeline_id(client, name: str) -> str:
    pipeline_id = client.get_pipeline_id(name)
    if not pipeline_id:
        raise CliError(f"no pipeline named {name!r} on the endpoint: check --pipeline-name / BREASTDX_TASK, "
                       "or upload it first with `breastdx pipeline create`")
    return pipeline_id


def _latest_version_id(client, pipeline_id: str, name: str) -> str:
    versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc").pipeline_versions
    if not versions:
        raise CliError(f"pipeline {name!r} has no version: run `breastdx pipeline update`")
    return versions[0].pipeline_version_id


# --- compile --------------------------------------------------------------------------------
def compile_package(args: argparse.Namespace, cluster: cluster_configs.ClusterConfig) -> str:
    """Compiles (TFX imports: ~15 s) unless --skip-compile names an existing package."""
    name = pipeline_name(args)
    package = os.path.abspath(cluster.package_for(name))
    if getattr(args, "skip_compile", False):
        if not os.path.exists(package):
            raise CliError(f"--skip-compile: no package at {package}; run `breastdx pipeline compile` first")
        return package
    cluster.require("image", "gcs_root")
    import kubeflow_runner  # deferred: imports TFX

    config = kubeflow_runner.cluster_pipeline_config(cluster, pipeline_name=getattr(args, "pipeline_name", None))
    return kubeflow_runner.compile_pipeline(config, cluster, package)


def pipeline_compile(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    print(compile_package(args, cluster))
    return 0


def _kfp_package(package: str) -> str:
    """KFP's upload API takes a PipelineSpec (YAML); a PipelineJob JSON is unwrapped.

    Raises:
        CliError: the package holds an executor open-source KFP refuses (checked before upload).
    """
    from pipeline import dry_run

    try:
        refused = dry_run.refused_executors(dry_run.load_package(package)[0], "kfp")
    except (DryRunError, KeyError, ValueError) as err:
        raise CliError(f"{package} is not a pipeline package KFP can take: {err}") from None
    if refused:
        raise CliError(f"{package}: Kubeflow Pipelines refuses {refused[0]}; recompile with "
                       "`breastdx pipeline compile` (this project's packages hold no such executor)")
    if package.endswith((".yaml", ".yml")):
        return package
    import yaml

    with open(package) as f:
        job = json.load(f)
    target = os.path.splitext(package)[0] + ".yaml"
    with open(target, "w") as f:
        yaml.safe_dump(job.get("pipelineSpec", job), f, sort_keys=True)
    return target


def pipeline_create(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    name = pipeline_name(args)
    if cluster.engine == "vertex":
        # Vertex AI has no pipeline registry to upload to: a run carries its package.
        package = compile_package(args, cluster)
        print(f"compiled {package}; Vertex AI runs it with `breastdx run create --engine vertex`")
        return 0
    client = kfp_client(cluster)
    if client.get_pipeline_id(name):
        raise CliError(f"a pipeline named {name!r} exists already: use `breastdx pipeline update`")
    package = _kfp_package(compile_package(args, cluster))
    uploaded = client.upload_pipeline(package, pipeline_name=name,
                                      description="breastdx TFX pipeline (research use only, not a diagnosis)")
    # The first upload makes a version named like the pipeline; add a dated one so
    # every version, the first included, reads <pipeline>_<timestamp>.
    version = client.upload_pipeline_version(package, cluster_configs.version_name(name),
                                             pipeline_id=uploaded.pipeline_id)
    print(f"pipeline {name} id={uploaded.pipeline_id} version={version.display_name} "
          f"version_id={version.pipeline_version_id}")
    return 0


def pipeline_update(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    name = pipeline_name(args)
    if cluster.engine == "vertex":
        return pipeline_create(args)
    client = kfp_client(cluster)
    pipeline_id = _pipeline_id(client, name)
    package = _kfp_package(compile_package(args, cluster))
    version = client.upload_pipeline_version(package, cluster_configs.version_name(name), pipeline_id=pipeline_id)
    print(f"pipeline {name} id={pipeline_id} version={version.display_name} version_id={version.pipeline_version_id}")
    return 0


def pipeline_list(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    if cluster.engine == "vertex":
        raise CliError("Vertex AI Pipelines keeps no uploaded pipelines: list runs with `breastdx run list`")
    client = kfp_client(cluster)
    response = client.list_pipelines(page_size=100)
    for item in response.pipelines or []:
        print(f"{item.pipeline_id}\t{item.display_name}\t{item.created_at}")
    return 0


def pipeline_delete(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    if cluster.engine == "vertex":
        raise CliError("Vertex AI Pipelines keeps no uploaded pipelines: nothing to delete")
    name = pipeline_name(args)
    client = kfp_client(cluster)
    pipeline_id = _pipeline_id(client, name)
    # KFP 2 refuses to delete a pipeline that still has versions.
    while True:
        versions = client.list_pipeline_versions(pipeline_id, page_size=100).pipeline_versions or []
        if not versions:
            break
        for version in versions:
            client.delete_pipeline_version(pipeline_id, version.pipeline_version_id)
    client.delete_pipeline(pipeline_id)
    print(f"deleted pipeline {name} id={pipeline_id}")
    return 0


# --- runs -----------------------------------------------------------------------------------
def _vertex(cluster: cluster_configs.ClusterConfig):
    cluster.require("vertex_project")
    from google.cloud import aiplatform  # deferred: heavy

    aiplatform.init(project=cluster.vertex_project, location=cluster.vertex_region)
    return aiplatform


def tree_fingerprint(args: argparse.Namespace, cluster: cluster_configs.ClusterConfig) -> Dict[str, str]:
    """The run parameters: ``tree_fingerprint``, a digest of the image root's files.

    Open-source KFP runs no ExampleGen driver, so the digest reaches ImageExampleGen's
    cache key as a parameter (kubeflow_runner.TREE_FINGERPRINT_PARAMETER)."""
    value = getattr(args, "tree_fingerprint", "auto")
    if value == "none":
        return {}
    if value != "auto":
        return {"tree_fingerprint": value}
    from components.image_ingest import layouts
    from kubeflow_runner import cluster_pipeline_config

    root = cluster_pipeline_config(cluster).data_root
    try:
        return {"tree_fingerprint": layouts.fingerprint(root)}
    except Exception as err:  # GCS refusals and missing roots alike: one line
        raise CliError(f"cannot fingerprint the image root {root} ({type(err).__name__}: {str(err)[:200]}); "
                       "check access to it, or pass --tree-fingerprint VALUE (or none)") from None


def run_create(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    name = pipeline_name(args)
    if cluster.engine == "vertex":
        aiplatform = _vertex(cluster)
        package = os.path.abspath(cluster.package_for(name))
        if not os.path.exists(package):
            raise CliError(f"no compiled package at {package}: run `breastdx pipeline compile --engine vertex`")
        parameters = tree_fingerprint(args, cluster)
        job = aiplatform.PipelineJob(display_name=name, template_path=package,
                                     pipeline_root=_pipeline_root(cluster, name), enable_caching=True,
                                     parameter_values=parameters)
        job.submit(service_account=cluster.vertex_service_account or None)
        print(f"run {job.resource_name} state={job.state.name}")
        if args.wait:
            return _vertex_wait(aiplatform, job.resource_name, args.timeout)
        return 0
    client = kfp_client(cluster)
    pipeline_id = _pipeline_id(client, name)
    version_id = _latest_version_id(client, pipeline_id, name)
    parameters = tree_fingerprint(args, cluster)
    experiment = client.create_experiment(cluster.experiment)
    run = client.run_pipeline(experiment_id=experiment.experiment_id,
                              job_name=cluster_configs.version_name(name),
                              pipeline_id=pipeline_id, version_id=version_id,
                              pipeline_root=_pipeline_root(cluster, name), params=parameters)
    print(f"run {run.run_id} state={run.state} version_id={version_id}")
    if args.wait:
        return _kfp_wait(client, run.run_id, args.timeout)
    return 0


def run_list(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    if cluster.engine == "vertex":
        aiplatform = _vertex(cluster)
        name = pipeline_name(args)
        for job in aiplatform.PipelineJob.list(filter=f'display_name="{name}"', order_by="create_time desc")[
                :args.limit]:
            print(f"{job.resource_name}\t{job.state.name}\t{job.create_time}")
        return 0
    client = kfp_client(cluster)
    response = client.list_runs(page_size=args.limit, sort_by="created_at desc")
    for run in response.runs or []:
        print(f"{run.run_id}\t{run.display_name}\t{run.state}\t{run.created_at}")
    return 0


def _kfp_get(client, run_id: str):
    import kfp_server_api

    try:
        return client.get_run(run_id)
    except kfp_server_api.ApiException as err:
        if err.status == 404:
            raise CliError(f"no run with id {run_id!r} on the endpoint: list them with `breastdx run list`") from None
        raise


def run_get(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    if cluster.engine == "vertex":
        aiplatform = _vertex(cluster)
        job = aiplatform.PipelineJob.get(args.run_id)
        print(f"{job.resource_name}\t{job.state.name}\t{job.create_time}")
        return 0
    run = _kfp_get(kfp_client(cluster), args.run_id)
    print(f"{run.run_id}\t{run.display_name}\t{run.state}\t{run.created_at}\t{run.finished_at}")
    return 0


def _kfp_wait(client, run_id: str, timeout: int) -> int:
    _kfp_get(client, run_id)
    try:
        run = client.wait_for_run_completion(run_id, timeout=timeout)
    except TimeoutError:
        raise CliError(f"run {run_id} did not finish within {timeout} s (it goes on; `breastdx run wait` again)") \
            from None
    print(f"run {run_id} state={run.state}")
    return 0 if run.state == "SUCCEEDED" else 1


def _vertex_wait(aiplatform, resource_name: str, timeout: int) -> int:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = aiplatform.PipelineJob.get(resource_name)
        state = job.state.name.replace("PIPELINE_STATE_", "")
        if state in TERMINAL_STATES:
            print(f"run {resource_name} state={state}")
            return 0 if state == "SUCCEEDED" else 1
        if time.monotonic() > deadline:
            raise CliError(f"run {resource_name} did not finish within {timeout} s")
        time.sleep(30)


def run_wait(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    if cluster.engine == "vertex":
        return _vertex_wait(_vertex(cluster), args.run_id, args.timeout)
    return _kfp_wait(kfp_client(cluster), args.run_id, args.timeout)


def pipeline_dry_run(args: argparse.Namespace) -> int:
    from breastdx_core import configs
    from pipeline import dry_run

    cluster = cluster_settings(args)
    name = pipeline_name(args)
    package = os.path.abspath(cluster.package_for(name))
    storage = args.storage or os.path.join(configs.load().workdir, "dry-run", "gcs")
    pipeline_root = args.pipeline_root or (_pipeline_root(cluster, name) if cluster.gcs_root else "")
    parameters = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--parameter takes NAME=VALUE, got {item!r}")
        parameters[key] = value
    try:
        result = dry_run.DryRun(package, cluster.engine, storage, pipeline_root=pipeline_root,
                                image_project_dir=cluster.image_project_dir, parameters=parameters).run()
    except DryRunError as err:  # refusals and failed tasks: one line (here and under `breastdx`)
        print(f"error: {err}", file=sys.stderr)
        return 2
    for task in result["tasks"]:
        print(f"{task['task']:<20} {task['seconds']:>7.1f} s  {task['log']}")
    print(f"pushed model: {result['pushed'] or '(none: not blessed or nothing pushed)'}")
    return 0


# --- entry ----------------------------------------------------------------------------------
def dispatch(args: argparse.Namespace) -> int:
    """Runs the verb; user errors become one line on stderr and exit status 2."""
    try:
        return args.func(args)
    except (CliError, cluster_configs.ClusterConfigError, DryRunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # the service's own refusals, without a traceback
        import kfp_server_api

        if isinstance(err, kfp_server_api.ApiException):
            detail = (err.body or "").strip().replace("\n", " ")[:300]
            print(f"error: Kubeflow Pipelines answered {err.status} {err.reason}: {detail}", file=sys.stderr)
            return 2
        raise


def main(argv: Optional[List[str]] = None) -> int:
    """Stand-alone entry (`python -m breastdx_cli.kfp …`) until breastdx_cli/main.py wires it."""
    parser = argparse.ArgumentParser(prog="breastdx")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return dispatch(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
