"""``breastdx web``: the argparse half of the web app.

``breastdx_cli.main`` calls :func:`add_web_parser` to add the verb and :func:`run_web` to run
it under gunicorn. Flags override ``BREASTDX_WEB_*`` environment variables, which override
``webapp.DEFAULTS``.
"""

from __future__ import annotations

import argparse
import logging

from serving import gunicorn_app
from webapp import DEFAULTS

log = logging.getLogger(__name__)

DEFAULT_PORT = 5000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_THREADS = 16
CLIENTS = ("rest", "grpc", "vertex")


def add_web_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``web`` verb to ``breastdx_cli.main``'s subparsers."""
    parser = subparsers.add_parser(
        "web",
        help="serve the upload-and-predict web app",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (0.0.0.0 in a container)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default=None,
        help=f"prediction back end (default {DEFAULTS['CLIENT']})",
    )
    parser.add_argument(
        "--server", default=None, help=f"model server REST URL (default {DEFAULTS['SERVER_URL']})"
    )
    parser.add_argument(
        "--grpc-target", default=None, help=f"gRPC host:port (default {DEFAULTS['GRPC_TARGET']})"
    )
    parser.add_argument(
        "--model", default=None, help=f"served model name (default {DEFAULTS['MODEL_NAME']})"
    )
    parser.add_argument(
        "--vertex-project", default=None, help="Google Cloud project for --client vertex"
    )
    parser.add_argument(
        "--vertex-model", default=None, help="AI Platform model for --client vertex"
    )
    parser.add_argument(
        "--vertex-version", default=None, help="AI Platform version (default: the model's default)"
    )
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gunicorn workers; more than one needs BREASTDX_WEB_SECRET_KEY set",
    )
    parser.set_defaults(func=run_web)
    return parser


def config_from_args(args: argparse.Namespace) -> dict:
    """The flags that were given, as ``create_app`` settings."""
    pairs = {
        "CLIENT": args.client,
        "SERVER_URL": args.server,
        "GRPC_TARGET": args.grpc_target,
        "MODEL_NAME": args.model,
        "VERTEX_PROJECT": args.vertex_project,
        "VERTEX_MODEL": args.vertex_model,
        "VERTEX_VERSION": args.vertex_version,
    }
    return {key: value for key, value in pairs.items() if value is not None}


def run_web(args: argparse.Namespace) -> int:
    """Serves the web app until interrupted; returns the exit code."""
    config = config_from_args(args)

    def factory():
        from webapp import create_app

        return create_app(config)

    gunicorn_app.run(factory, args.host, args.port, args.threads, workers=args.workers)
    return 0


def main(argv=None) -> int:
    """``python -m webapp``: the same as ``breastdx web``."""
    parser = argparse.ArgumentParser(prog="python -m webapp")
    subparsers = parser.add_subparsers(dest="verb")
    add_web_parser(subparsers)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parser.parse_args(["web"] + list(argv or []))
    return args.func(args)
