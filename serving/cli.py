"""``breastdx serve``: the argparse half of the model server.

``breastdx_cli.main`` calls :func:`add_serve_parser` to add the verb and :func:`run_serve` to
run it. The flags are TF Serving's ideas under this project's names (``--port`` is its
``--rest_api_port``, ``--model-config-file`` its ``--model_config_file``).
"""

from __future__ import annotations

import argparse
import logging
import os

from serving import gunicorn_app
from serving.settings import (
    DEFAULT_BATCH_THREADS,
    DEFAULT_BATCH_TIMEOUT_S,
    DEFAULT_HOST,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_NUM_VERSIONS,
    DEFAULT_POLL_SECONDS,
    DEFAULT_PORT,
)

log = logging.getLogger(__name__)

MS_PER_S = 1000.0


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The model server's flags, shared by ``breastdx serve`` and ``python -m serving``."""
    parser.add_argument(
        "--serving-root",
        default=None,
        help="folder with <model_name>/<integer version>/saved_model.pb (Pusher's output); "
        "default: breastdx_core.configs' serving root under --workdir",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="the pipeline's workdir, for the default --serving-root (env BREASTDX_WORKDIR)",
    )
    parser.add_argument(
        "--model-name",
        action="append",
        default=None,
        help="model to serve (repeatable); default: every sub-folder of --serving-root",
    )
    parser.add_argument(
        "--model-config-file",
        default=None,
        help="version labels and policy: JSON or TF Serving's model config text format",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (0.0.0.0 in a container)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="REST port")
    parser.add_argument(
        "--threads", type=int, default=gunicorn_app.DEFAULT_THREADS, help="request threads"
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help="how often the serving root is scanned for new versions",
    )
    parser.add_argument(
        "--num-versions",
        type=int,
        default=DEFAULT_NUM_VERSIONS,
        help="newest versions kept loaded (older ones stay reachable for a roll-back)",
    )
    parser.add_argument("--no-batching", action="store_true", help="run each request on its own")
    parser.add_argument(
        "--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="rows per batch"
    )
    parser.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=DEFAULT_BATCH_TIMEOUT_S * MS_PER_S,
        help="how long a batch waits for more requests",
    )
    parser.add_argument(
        "--batch-threads",
        type=int,
        default=DEFAULT_BATCH_THREADS,
        help="batches that may run at once (each TensorFlow call uses every core)",
    )


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``serve`` verb to ``breastdx_cli.main``'s subparsers."""
    parser = subparsers.add_parser(
        "serve",
        help="serve pushed models over TF Serving's REST API",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_server_arguments(parser)
    parser.set_defaults(func=run_serve)
    return parser


def app_factory(args: argparse.Namespace):
    """A zero-argument factory for gunicorn; TensorFlow is imported in the worker only."""

    def factory():
        from serving.server import create_app

        return create_app(
            args.serving_root,
            args.model_name,
            args.model_config_file,
            args.poll_seconds,
            args.num_versions,
            not args.no_batching,
            args.max_batch_size,
            args.batch_timeout_ms / MS_PER_S,
            batch_threads=args.batch_threads,
        )

    return factory


def resolve_serving_root(args: argparse.Namespace) -> str:
    """``--serving-root``, or the pipeline config's serving root (where Pusher writes)."""
    if args.serving_root:
        return args.serving_root
    from breastdx_core import configs  # pure Python: the settings' one source of truth

    return configs.load(workdir=getattr(args, "workdir", None)).serving_root


def run_serve(args: argparse.Namespace) -> int:
    """Validates the flags and serves until interrupted; returns the exit code."""
    try:
        args.serving_root = resolve_serving_root(args)
    except ValueError as err:
        log.error("%s", err)
        return 2
    if not os.path.isdir(args.serving_root):
        log.error("--serving-root %s is not a folder", args.serving_root)
        return 2
    if args.model_config_file and not os.path.isfile(args.model_config_file):
        log.error("--model-config-file %s not found", args.model_config_file)
        return 2
    gunicorn_app.run(app_factory(args), args.host, args.port, args.threads)
    return 0


def main(argv=None) -> int:
    """``python -m serving``: the same as ``breastdx serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="TF-Serving-compatible model server",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_server_arguments(parser)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run_serve(parser.parse_args(argv))
