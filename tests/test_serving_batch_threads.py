"""`--batch-threads` reaches the model server's batcher (bench/serve.py tunes it)."""

import argparse

from serving import cli
from serving.settings import DEFAULT_BATCH_THREADS


def _args(*flags):
    parser = argparse.ArgumentParser()
    cli.add_server_arguments(parser)
    return parser.parse_args(list(flags))


def test_batch_threads_flag_reaches_the_batcher(tmp_path):
    assert _args().batch_threads == DEFAULT_BATCH_THREADS
    args = _args(
        "--serving-root", str(tmp_path), "--batch-threads", "1", "--batch-timeout-ms", "20"
    )
    app = cli.app_factory(args)()
    batcher = app.extensions["batcher"]
    assert batcher.num_threads == 1
    assert batcher.timeout_s == 0.02


def test_no_batching_has_no_batcher(tmp_path):
    app = cli.app_factory(_args("--serving-root", str(tmp_path), "--no-batching"))()
    assert app.extensions["batcher"] is None
