"""Runs a WSGI app factory under gunicorn's threaded worker.

``serving.cli.run_serve`` and ``webapp.cli.run_web`` call :func:`run`. The factory is
called in the worker after the fork (gunicorn's default, no ``preload_app``), so the
master never imports TensorFlow and the model store's threads start in the process
that serves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gunicorn.app.base import BaseApplication

log = logging.getLogger(__name__)

WORKER_CLASS = "gthread"
DEFAULT_THREADS = 32
DEFAULT_TIMEOUT_S = 120  # a worker busy loading a large SavedModel must not be killed


class _Application(BaseApplication):
    def __init__(self, factory: Callable, options: dict):
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self):
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._factory()


def run(
    factory: Callable,
    host: str,
    port: int,
    threads: int = DEFAULT_THREADS,
    workers: int = 1,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> None:
    """Serves ``factory()`` on ``host:port`` until interrupted.

    Args:
        factory: returns the WSGI app; called once per worker process.
        host: address to bind (``127.0.0.1`` local only, ``0.0.0.0`` in a container).
        port: TCP port.
        threads: request threads per worker.
        workers: worker processes; the model server uses one (its models and batcher live
            in the process), the web app may use more when a secret key is configured.
        timeout_s: gunicorn's worker timeout.
    """
    log.info("gunicorn on %s:%d, %d worker(s) x %d threads", host, port, workers, threads)
    _Application(
        factory,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": WORKER_CLASS,
            "timeout": timeout_s,
            "graceful_timeout": timeout_s,
            "accesslog": "-",
        },
    ).run()
