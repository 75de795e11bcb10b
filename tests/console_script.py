"""The `breastdx` console script in its own process, as a user runs it: tests of a user's
mistake call `user_error` and then read the one-line message it returns."""

from __future__ import annotations

import os
import subprocess
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# What a wrong data root must be reported without: ~10 s of imports before the first line.
HEAVY_PACKAGES = ("tensorflow", "tfx")


def user_error(*args: str, timeout: int = 300, python_flags: tuple[str, ...] = ()) -> str:
    """Runs ``breastdx <args>`` and returns its stderr, asserting what every user error gives:
    exit 2 and no traceback."""
    done = subprocess.run(
        [sys.executable, *python_flags, "-m", "breastdx_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT,
        env=dict(os.environ, PYTHONPATH=PROJECT),
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def early_user_error(*args: str, timeout: int = 300) -> str:
    """`user_error`, asserting too that the console script reported it before importing any of
    HEAVY_PACKAGES (``python -X importtime`` lists every import); returns stderr without
    those listings."""
    stderr = user_error(*args, timeout=timeout, python_flags=("-X", "importtime"))
    lines = stderr.splitlines()
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in lines
        if line.startswith("import time:")
    }
    assert imported, "python -X importtime listed no imports"
    assert not imported & set(HEAVY_PACKAGES), sorted(imported & set(HEAVY_PACKAGES))
    return "\n".join(line for line in lines if not line.startswith("import time:"))


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
