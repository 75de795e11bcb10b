"""`breastdx pipeline …`, `breastdx run …`, `breastdx recurring …`: the scriptable path.

The design card's commands are the ``tfx`` CLI's (`tfx pipeline create|update`,
`tfx run create --engine kubeflow`, made to work by pipeline/compat/tfx_cli_kubeflow.py);
these verbs do the same through the same implementation (breastdx_cli/engines.py: one
engine object per engine, Kubeflow Pipelines 2 or Vertex AI), plus what a script wants:
`pipeline compile|create|update|list|delete|dry-run`,
`run create|list|get|wait|terminate|retry|delete` (any `--param`, `--version`,
`--cache/--no-cache`) and `recurring create|list|enable|disable|delete`.

`breastdx_cli/main.py` calls `add_parsers(subparsers)`; each verb is a function of the
parsed arguments that returns the exit status. Settings come from
`breastdx_core.cluster_configs.load()` (``BREASTDX_*`` variables, then the flags here).
A setting the cluster needs and does not have, an endpoint that does not answer or a
pipeline that does not exist ends the command with one line that names what to fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from breastdx_cli import engines
from breastdx_core import cluster_configs, errors
from pipeline.compat.dry_run import DryRunError

log = logging.getLogger("breastdx")

CliError = engines.EngineError  # a user's mistake or an unreachable service: one line, exit 2


# --- parsers --------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "cluster (defaults: BREASTDX_* variables, see breastdx_core/cluster_configs.py)"
    )
    group.add_argument(
        "--engine",
        choices=cluster_configs.ENGINES,
        default=None,
        help="Kubeflow Pipelines 2 (kfp) or Vertex AI Pipelines (vertex); default: BREASTDX_ENGINE or kfp",
    )
    group.add_argument(
        "--endpoint",
        dest="kfp_endpoint",
        default=None,
        help="KFP 2 API endpoint, e.g. http://localhost:8080 (BREASTDX_KFP_ENDPOINT)",
    )
    group.add_argument(
        "--namespace",
        dest="kfp_namespace",
        default=None,
        help="KFP namespace (multi-user installs; BREASTDX_KFP_NAMESPACE, default kubeflow)",
    )
    group.add_argument(
        "--project",
        dest="vertex_project",
        default=None,
        help="Google Cloud project for Vertex AI (BREASTDX_VERTEX_PROJECT)",
    )
    group.add_argument(
        "--region",
        dest="vertex_region",
        default=None,
        help="Vertex AI region (BREASTDX_VERTEX_REGION, default us-central1)",
    )
    group.add_argument(
        "--pipeline-name",
        default=None,
        help="pipeline name (default: breastdx-<task>, from BREASTDX_TASK)",
    )
    group.add_argument(
        "--auth",
        dest="kfp_auth",
        choices=cluster_configs.KFP_AUTH_MODES,
        default=None,
        help="sign-in to the KFP API: none, iap (Google ID token for --iap-client-id) or token "
        "(BREASTDX_KFP_TOKEN / --token-file); default BREASTDX_KFP_AUTH or none",
    )
    group.add_argument(
        "--iap-client-id",
        dest="kfp_iap_client_id",
        default=None,
        help="OAuth client id of the IAP in front of KFP (BREASTDX_KFP_IAP_CLIENT_ID)",
    )
    group.add_argument(
        "--token-file",
        dest="kfp_token_file",
        default=None,
        help="file holding the bearer token for --auth token (BREASTDX_KFP_TOKEN_FILE)",
    )


def _compile_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compile")
    group.add_argument("--image", default=None, help="pipeline image (BREASTDX_IMAGE)")
    group.add_argument(
        "--gcs-root", dest="gcs_root", default=None, help="gs://BUCKET/PREFIX (BREASTDX_GCS_ROOT)"
    )
    group.add_argument(
        "--package",
        dest="package_path",
        default=None,
        help="compiled package path (.yaml: PipelineSpec; .json: PipelineJob); "
        "default build/<pipeline>.yaml for kfp, .json for vertex",
    )
    group.add_argument(
        "--skip-compile",
        action="store_true",
        help="upload the existing --package instead of compiling (CI compiles once)",
    )


def add_parsers(subparsers: Any) -> None:
    """Adds the `pipeline` and `run` verbs to the `breastdx` CLI's subparsers."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    pipeline = subparsers.add_parser(
        "pipeline",
        help="compile and upload the pipeline to Kubeflow / Vertex AI",
        formatter_class=fmt,
    )
    pipeline_verbs = pipeline.add_subparsers(dest="pipeline_verb", metavar="VERB", required=True)

    p = pipeline_verbs.add_parser(
        "compile", help="compile to a KFP 2 / Vertex package", formatter_class=fmt
    )
    _common(p)
    _compile_flags(p)
    p.set_defaults(func=pipeline_compile)

    p = pipeline_verbs.add_parser(
        "create", help="compile and upload a new pipeline", formatter_class=fmt
    )
    _common(p)
    _compile_flags(p)
    p.set_defaults(func=pipeline_create)

    p = pipeline_verbs.add_parser(
        "update",
        help="compile and upload a new version <pipeline>_<UTC timestamp>",
        formatter_class=fmt,
    )
    _common(p)
    _compile_flags(p)
    p.set_defaults(func=pipeline_update)

    p = pipeline_verbs.add_parser("list", help="list uploaded pipelines", formatter_class=fmt)
    _common(p)
    p.set_defaults(func=pipeline_list)

    p = pipeline_verbs.add_parser(
        "delete", help="delete a pipeline and its versions", formatter_class=fmt
    )
    _common(p)
    p.set_defaults(func=pipeline_delete)

    p = pipeline_verbs.add_parser(
        "dry-run",
        formatter_class=fmt,
        help="run a compiled package here, task by task, as the engine would (pipeline/compat/dry_run.py)",
    )
    _common(p)
    p.add_argument(
        "--package",
        dest="package_path",
        default=None,
        help="compiled package (default: build/<pipeline>.yaml for kfp, .json for vertex)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="local folder standing in for gs:// (default: <workdir>/dry-run/gcs)",
    )
    p.add_argument(
        "--pipeline-root",
        default=None,
        help="the engine's pipeline root (default: <BREASTDX_GCS_ROOT>/pipelines/<pipeline>)",
    )
    p.add_argument(
        "--parameter", action="append", default=[], metavar="NAME=VALUE", help="a run parameter"
    )
    p.set_defaults(func=pipeline_dry_run)

    run = subparsers.add_parser(
        "run", help="start and follow pipeline runs on Kubeflow / Vertex AI", formatter_class=fmt
    )
    run_verbs = run.add_subparsers(dest="run_verb", metavar="VERB", required=True)

    p = run_verbs.add_parser(
        "create", help="run the pipeline (its newest version, or --version)", formatter_class=fmt
    )
    _common(p)
    _run_flags(p)
    p.add_argument(
        "--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeded"
    )
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

    p = run_verbs.add_parser(
        "wait", help="wait for a run; exit 1 unless it succeeded", formatter_class=fmt
    )
    _common(p)
    p.add_argument("run_id", help="KFP run id, or the Vertex PipelineJob resource name")
    p.add_argument("--timeout", type=int, default=6 * 3600)
    p.set_defaults(func=run_wait)

    for action, text in (
        ("terminate", "stop a run"),
        ("retry", "retry a failed run (KFP)"),
        ("delete", "delete a run"),
    ):
        p = run_verbs.add_parser(action, help=text, formatter_class=fmt)
        _common(p)
        p.add_argument("run_id", help="KFP run id, or the Vertex PipelineJob resource name")
        p.set_defaults(func=run_action, action=action)

    recurring = subparsers.add_parser(
        "recurring", help="recurring (scheduled) runs on Kubeflow / Vertex AI", formatter_class=fmt
    )
    recurring_verbs = recurring.add_subparsers(dest="recurring_verb", metavar="VERB", required=True)
    p = recurring_verbs.add_parser(
        "create", help="run the pipeline on a cron schedule", formatter_class=fmt
    )
    _common(p)
    _run_flags(p)
    p.add_argument(
        "--cron",
        required=True,
        help="KFP: 6 fields with seconds ('0 0 3 * * *'); Vertex: 5 fields ('0 3 * * *')",
    )
    p.add_argument("--max-concurrency", type=int, default=1, help="runs of the schedule at once")
    p.set_defaults(func=recurring_create)
    p = recurring_verbs.add_parser("list", help="list recurring runs", formatter_class=fmt)
    _common(p)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=recurring_list)
    for action in ("enable", "disable", "delete"):
        p = recurring_verbs.add_parser(
            action, help=f"{action} a recurring run", formatter_class=fmt
        )
        _common(p)
        p.add_argument(
            "recurring_id", help="KFP recurring run id, or the Vertex schedule resource name"
        )
        p.set_defaults(func=recurring_action, action=action)


def _run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gcs-root",
        dest="gcs_root",
        default=None,
        help="gs://BUCKET/PREFIX; the run's pipeline root is "
        "<root>/pipelines/<pipeline> (unset: the package's default root)",
    )
    parser.add_argument(
        "--package",
        dest="package_path",
        default=None,
        help="vertex: the compiled package to submit",
    )
    parser.add_argument(
        "--experiment", default=None, help="KFP experiment (BREASTDX_EXPERIMENT, default breastdx)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter for the run (repeat for more)",
    )
    parser.add_argument(
        "--version",
        default=None,
        help="KFP: the pipeline version (name or id) to run; default the newest",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        dest="caching",
        action="store_const",
        const=True,
        default=None,
        help="reuse cached step outputs (the compiled default)",
    )
    cache.add_argument(
        "--no-cache", dest="caching", action="store_const", const=False, help="run every step again"
    )
    parser.add_argument(
        "--tree-fingerprint",
        default="auto",
        help="the tree_fingerprint run parameter (ImageExampleGen's cache key "
        "on KFP): auto = a digest of every file under the image root, "
        "computed here; none = leave it empty (the compiled default)",
    )


# --- settings -------------------------------------------------------------------------------
_CLUSTER_FLAGS = (
    "engine",
    "kfp_endpoint",
    "kfp_namespace",
    "vertex_project",
    "vertex_region",
    "image",
    "gcs_root",
    "package_path",
    "experiment",
    "kfp_auth",
    "kfp_iap_client_id",
    "kfp_token_file",
)


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
    """<GCS root>/pipelines/<name>, or "" (the package's default root) without a GCS root."""
    # Must match configs.PipelineConfig.pipeline_root with workdir = the GCS root.
    if not cluster.gcs_root:
        return ""
    cluster.require("gcs_root")
    return f"{cluster.gcs_root}/pipelines/{name}"


# --- compile --------------------------------------------------------------------------------
def compile_package(args: argparse.Namespace, cluster: cluster_configs.ClusterConfig) -> str:
    """Compiles (TFX imports: ~15 s) unless --skip-compile names an existing package."""
    name = pipeline_name(args)
    package = os.path.abspath(cluster.package_for(name))
    if getattr(args, "skip_compile", False):
        if not os.path.exists(package):
            raise CliError(
                f"--skip-compile: no package at {package}; run `breastdx pipeline compile` first"
            )
        return package
    cluster.require("image", "gcs_root")
    import kubeflow_runner  # deferred: imports TFX

    config = kubeflow_runner.cluster_pipeline_config(
        cluster, pipeline_name=getattr(args, "pipeline_name", None)
    )
    return kubeflow_runner.compile_pipeline(config, cluster, package)


def pipeline_compile(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    print(compile_package(args, cluster))
    return 0


def _upload(args: argparse.Namespace, update: bool) -> int:
    cluster = cluster_settings(args)
    name = pipeline_name(args)
    engine = engines.engine_for(cluster)
    if cluster.engine == "vertex":
        # Vertex AI has no pipeline registry to upload to: a run carries its package.
        package = compile_package(args, cluster)
        print(f"compiled {package}; Vertex AI runs it with `breastdx run create --engine vertex`")
        return 0
    engine.pipeline_id(name, required=update)  # refuse before the ~15 s compile
    uploaded = engine.upload(name, compile_package(args, cluster), update=update)
    print(
        f"pipeline {name} id={uploaded.pipeline_id} version={uploaded.version_name} "
        f"version_id={uploaded.version_id}"
    )
    return 0


def pipeline_create(args: argparse.Namespace) -> int:
    return _upload(args, update=False)


def pipeline_update(args: argparse.Namespace) -> int:
    return _upload(args, update=True)


def pipeline_list(args: argparse.Namespace) -> int:
    for row in engines.engine_for(cluster_settings(args)).list_pipelines():
        print("\t".join(row))
    return 0


def pipeline_delete(args: argparse.Namespace) -> int:
    name = pipeline_name(args)
    pipeline_id = engines.engine_for(cluster_settings(args)).delete_pipeline(name)
    print(f"deleted pipeline {name} id={pipeline_id}")
    return 0


# --- runs -----------------------------------------------------------------------------------
def tree_fingerprint(
    args: argparse.Namespace, cluster: cluster_configs.ClusterConfig
) -> dict[str, str]:
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
        raise CliError(
            f"cannot fingerprint the image root {root} ({type(err).__name__}: {str(err)[:200]}); "
            "check access to it, or pass --tree-fingerprint VALUE (or none)"
        ) from None


def run_options(
    args: argparse.Namespace, cluster: cluster_configs.ClusterConfig, name: str
) -> engines.RunOptions:
    """What `run create` and `recurring create` send: --param values (and the tree
    fingerprint unless a --param gives it), the version, caching, the pipeline root."""
    parameters = engines.parse_parameters(args.param, "--param")
    if "tree_fingerprint" not in parameters:
        parameters.update(tree_fingerprint(args, cluster))
    return engines.RunOptions(
        parameters=parameters,
        version=args.version or "",
        caching=args.caching,
        pipeline_root=_pipeline_root(cluster, name),
        experiment=getattr(args, "experiment", None) or "",
        package=getattr(args, "package_path", None) or "",
    )


def _print_run(prefix: str, run: engines.Run) -> None:
    print(f"{prefix} {run.run_id} state={run.state} {run.link}".rstrip())


def run_create(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    name = pipeline_name(args)
    engine = engines.engine_for(cluster)
    engine.check()
    run = engine.create_run(name, run_options(args, cluster, name))
    _print_run("run", run)
    if args.wait:
        return _wait(engine, run.run_id, args.timeout)
    return 0


def run_list(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    name = pipeline_name(args) if cluster.engine == "vertex" else ""
    for run in engines.engine_for(cluster).list_runs(name, args.limit):
        print(f"{run.run_id}\t{run.name}\t{run.state}\t{run.created_at}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    run = engines.engine_for(cluster_settings(args)).get_run(args.run_id)
    print(f"{run.run_id}\t{run.name}\t{run.state}\t{run.created_at}\t{run.finished_at}")
    return 0


def _wait(engine, run_id: str, timeout: int) -> int:
    run = engine.wait_run(run_id, timeout)
    print(f"run {run_id} state={run.state}")
    return 0 if run.state == "SUCCEEDED" else 1


def run_wait(args: argparse.Namespace) -> int:
    return _wait(engines.engine_for(cluster_settings(args)), args.run_id, args.timeout)


def run_action(args: argparse.Namespace) -> int:
    """`run terminate|retry|delete RUN_ID`."""
    engine = engines.engine_for(cluster_settings(args))
    getattr(engine, f"{args.action}_run")(args.run_id)
    print(f"run {args.run_id}: {args.action} requested")
    return 0


def recurring_create(args: argparse.Namespace) -> int:
    cluster = cluster_settings(args)
    name = pipeline_name(args)
    engine = engines.engine_for(cluster)
    engine.check()
    job = engine.create_recurring(
        name, args.cron, run_options(args, cluster, name), max_concurrency=args.max_concurrency
    )
    print(f"recurring run {job.run_id} ({job.name}) cron={args.cron!r} state={job.state}")
    return 0


def recurring_list(args: argparse.Namespace) -> int:
    for job in engines.engine_for(cluster_settings(args)).list_recurring(args.limit):
        print(f"{job.run_id}\t{job.name}\t{job.state}\t{job.created_at}")
    return 0


def recurring_action(args: argparse.Namespace) -> int:
    """`recurring enable|disable|delete ID`."""
    engines.engine_for(cluster_settings(args)).set_recurring(args.recurring_id, args.action)
    print(f"recurring run {args.recurring_id}: {args.action}d")
    return 0


def pipeline_dry_run(args: argparse.Namespace) -> int:
    from breastdx_core import configs
    from pipeline.compat import dry_run

    cluster = cluster_settings(args)
    name = pipeline_name(args)
    package = os.path.abspath(cluster.package_for(name))
    storage = args.storage or os.path.join(configs.load().workdir, "dry-run", "gcs")
    pipeline_root = args.pipeline_root or (
        _pipeline_root(cluster, name) if cluster.gcs_root else ""
    )
    parameters = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--parameter takes NAME=VALUE, got {item!r}")
        parameters[key] = value
    try:
        result = dry_run.DryRun(
            package,
            cluster.engine,
            storage,
            pipeline_root=pipeline_root,
            image_project_dir=cluster.image_project_dir,
            parameters=parameters,
        ).run()
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
    except (errors.BreastdxError, DryRunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m breastdx_cli.kfp …`) until breastdx_cli/main.py wires it."""
    parser = argparse.ArgumentParser(prog="breastdx")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return dispatch(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
