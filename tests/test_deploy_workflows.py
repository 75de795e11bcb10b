""".github/workflows: valid GitHub Actions (check-jsonschema's vendored schema), tests on
every push, and continuous training on a push to main that touches the pipeline."""
from __future__ import annotations

import glob
import os

import yaml

from tools_venv import PROJECT_DIR, run

WORKFLOWS = os.path.join(PROJECT_DIR, ".github", "workflows")


def _load(name):
    with open(os.path.join(WORKFLOWS, name)) as f:
        doc = yaml.safe_load(f)
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def test_workflows_match_the_schema():
    files = sorted(glob.glob(os.path.join(WORKFLOWS, "*.yml")))
    assert len(files) >= 2
    result = run("check-jsonschema", ["--builtin-schema", "vendor.github-workflows", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_can_fail(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    steps: []\n")  # no runs-on
    assert run("check-jsonschema", ["--builtin-schema", "vendor.github-workflows", str(bad)]).returncode != 0


def test_tests_run_on_every_push():
    ci = _load("ci.yml")
    assert "push" in ci["on"] and not (ci["on"]["push"] or {}).get("branches")
    assert any(step.get("run") == "make test" for step in ci["jobs"]["test"]["steps"])


def test_push_to_main_retrains():
    cd = _load("cd.yml")
    push = cd["on"]["push"]
    assert push["branches"] == ["main"]
    assert {"pipeline/**", "components/**", "deploy/**"} <= set(push["paths"])
    runs = [step.get("run", "") for job in cd["jobs"].values() for step in job["steps"]]
    assert any("breastdx pipeline update" in r for r in runs)
    assert any("breastdx run create" in r for r in runs)
    assert cd["jobs"]["train"]["needs"] == "images" and cd["jobs"]["images"]["needs"] == "test"
    assert "BREASTDX_KFP_ENDPOINT" in cd["env"] and "secrets." in cd["env"]["BREASTDX_KFP_ENDPOINT"]
