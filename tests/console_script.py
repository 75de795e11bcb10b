"""The `breastdx` console script in its own process, as a user runs it: tests of a user's
mistake call `user_error` and then read the one-line message it returns."""

from __future__ import annotations

import os
import subprocess
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_error(*args: str, timeout: int = 300) -> str:
    """Runs ``breastdx <args>`` and returns its stderr, asserting what every user error gives:
    exit 2 and no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "breastdx_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT,
        env=dict(os.environ, PYTHONPATH=PROJECT),
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def dry_run_error(package: str, pipeline_root: str, storage: str, timeout: int = 300) -> str:
    """`user_error` of ``breastdx pipeline dry-run`` of a KFP ``package`` at ``pipeline_root``
    with its object store in ``storage``."""
    return user_error(
        "pipeline",
        "dry-run",
        "--engine",
        "kfp",
        "--package",
        str(package),
        "--pipeline-root",
        pipeline_root,
        "--storage",
        str(storage),
        timeout=timeout,
    )
