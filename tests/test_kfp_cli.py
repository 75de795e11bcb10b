"""`breastdx pipeline …` / `breastdx run …` (breastdx_cli/kfp.py) against the stand-in of
the KFP 2 REST API (v2beta1) in tests/kfp_standin.py (its routes and bodies read from
kfp_server_api; the tfx CLI's own commands: tests/test_tfx_cli_kubeflow.py).

The real kfp.Client talks to it over HTTP; the tests assert what the client sent
(multipart uploads, version names, run bodies) and what a person sees on bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
from typing import Any

import kfp_standin
import pytest
import yaml
from kfp_standin import API

from breastdx_cli import kfp as kfp_cli
from breastdx_core import cluster_configs

SPEC = {
    "pipelineInfo": {"name": "breastdx-idc"},
    "schemaVersion": "2.0.0",
    "root": {
        "dag": {"tasks": {}},
        "inputDefinitions": {
            "parameters": {"tree_fingerprint": {"parameterType": "STRING", "defaultValue": ""}}
        },
    },
    "sdkVersion": "tfx-1.16.0",
    "components": {},
    "deploymentSpec": {"executors": {}},
}


FakeKfp = kfp_standin.KfpStandIn  # the KFP 2 API, checked against kfp_server_api's definition


@pytest.fixture()
def kfp_server():
    fake, server = kfp_standin.start()
    yield fake
    assert fake.invalid == []  # every request fitted KFP's API definition
    server.shutdown()
    server.server_close()


@pytest.fixture()
def package(tmp_path):
    """A compiled package as kubeflow_runner writes it for KFP (compiling is tested in
    test_kubeflow_runner.py; here the upload path is under test)."""
    path = tmp_path / "breastdx-idc.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(cluster_configs.ENV_NAMES):
        monkeypatch.delenv(name, raising=False)
    for name in ("BREASTDX_TASK", "BREASTDX_PIPELINE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="breastdx")
    kfp_cli.add_parsers(parser.add_subparsers(dest="command", required=True))
    return kfp_cli.dispatch(parser.parse_args(argv))


def uploads(fake: FakeKfp, kind: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["path"] == f"{API}/pipelines/{kind}"]


def test_create_update_run_wait(kfp_server, package, capsys):
    common = ["--endpoint", kfp_server.endpoint, "--package", str(package), "--skip-compile"]
    assert cli(["pipeline", "create", *common]) == 0

    first = uploads(kfp_server, "upload")
    assert len(first) == 1 and first[0]["query"]["name"] == "breastdx-idc"
    assert yaml.safe_load(first[0]["file"])["pipelineInfo"]["name"] == "breastdx-idc"
    assert first[0]["file_name"].endswith(".yaml")  # the server parses PipelineSpec YAML

    assert cli(["pipeline", "update", *common]) == 0
    versions = uploads(kfp_server, "upload_version")
    pipeline_id = next(iter(kfp_server.pipelines))
    # create's dated version, then update's (KFP's own first version is named like the pipeline);
    # within one second the second name gets "-2" (KFP refuses a version name twice: 409)
    names = [v["display_name"] for v in kfp_server.versions[pipeline_id]]
    dated = [name for name in names if name != "breastdx-idc"]
    assert len(dated) == 2 and len(set(dated)) == 2
    assert all(v["query"]["pipelineid"] == pipeline_id for v in versions)
    assert all(re.fullmatch(r"breastdx-idc_\d{14}(-\d)?", v["query"]["name"]) for v in versions)
    newest = kfp_server.versions[pipeline_id][0]["pipeline_version_id"]

    capsys.readouterr()
    assert (
        cli(
            [
                "run",
                "create",
                "--endpoint",
                kfp_server.endpoint,
                "--gcs-root",
                "gs://bucket/breastdx",
                "--tree-fingerprint",
                "digest-of-the-images",
                "--wait",
                "--timeout",
                "60",
            ]
        )
        == 0
    )
    body = [r for r in kfp_server.requests if r["method"] == "POST" and r["path"] == f"{API}/runs"][
        0
    ]["json"]
    assert body["pipeline_version_reference"] == {
        "pipeline_id": pipeline_id,
        "pipeline_version_id": newest,
    }
    assert body["runtime_config"]["pipeline_root"] == "gs://bucket/breastdx/pipelines/breastdx-idc"
    assert body["runtime_config"]["parameters"] == {
        "tree_fingerprint": "digest-of-the-images"
    }  # ImageExampleGen's key
    assert kfp_server.experiments[body["experiment_id"]]["display_name"] == "breastdx"
    out = capsys.readouterr().out
    assert "state=SUCCEEDED" in out
    # .github/workflows/cd.yml reads the run id as `awk '/^run /{print $2}'`
    ids = [line.split()[1] for line in out.splitlines() if line.startswith("run ")]
    assert ids[0] == next(iter(kfp_server.runs))

    run_id = next(iter(kfp_server.runs))
    assert cli(["run", "get", "--endpoint", kfp_server.endpoint, run_id]) == 0
    assert cli(["run", "list", "--endpoint", kfp_server.endpoint]) == 0
    assert cli(["pipeline", "list", "--endpoint", kfp_server.endpoint]) == 0
    out = capsys.readouterr().out
    assert run_id in out and pipeline_id in out and "SUCCEEDED" in out


def test_delete_removes_versions_then_pipeline(kfp_server, package):
    common = ["--endpoint", kfp_server.endpoint]
    assert cli(["pipeline", "create", *common, "--package", str(package), "--skip-compile"]) == 0
    assert cli(["pipeline", "delete", *common]) == 0
    assert kfp_server.pipelines == {}
    deletes = [r["path"] for r in kfp_server.requests if r["method"] == "DELETE"]
    assert (
        deletes[-1].count("/") == 4
        and all("/versions/" in d for d in deletes[:-1])
        and len(deletes) == 3
    )


def test_json_package_is_unwrapped_for_kfp(kfp_server, tmp_path):
    """A Vertex-style PipelineJob JSON uploads as its PipelineSpec YAML."""
    job = tmp_path / "breastdx-idc.json"
    job.write_text(
        json.dumps(
            {
                "displayName": "breastdx-idc",
                "pipelineSpec": SPEC,
                "runtimeConfig": {"gcsOutputDirectory": "gs://b/x"},
            }
        )
    )
    assert (
        cli(
            [
                "pipeline",
                "create",
                "--endpoint",
                kfp_server.endpoint,
                "--package",
                str(job),
                "--skip-compile",
            ]
        )
        == 0
    )
    sent = yaml.safe_load(uploads(kfp_server, "upload")[0]["file"])
    assert sent == SPEC


def test_a_package_kfp_refuses_is_not_uploaded(kfp_server, tmp_path, capsys):
    """A resolver executor (what a TFX Resolver compiles to): one line naming the fix, exit 2,
    nothing uploaded."""
    spec = dict(
        SPEC,
        root={
            "dag": {
                "tasks": {"LatestBlessedModel": {"componentRef": {"name": "LatestBlessedModel"}}}
            }
        },
        components={"LatestBlessedModel": {"executorLabel": "LatestBlessedModel_executor"}},
        deploymentSpec={"executors": {"LatestBlessedModel_executor": {"resolver": {}}}},
    )
    package = tmp_path / "breastdx-idc.yaml"
    package.write_text(yaml.safe_dump(spec))
    assert (
        cli(
            [
                "pipeline",
                "create",
                "--endpoint",
                kfp_server.endpoint,
                "--package",
                str(package),
                "--skip-compile",
            ]
        )
        == 2
    )
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "refuses LatestBlessedModel: resolver executors not implemented" in line
    assert uploads(kfp_server, "upload") == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["pipeline", "list", "--endpoint", "http://127.0.0.1:{port}"],
            "cannot reach the Kubeflow Pipelines endpoint",
        ),
        (["pipeline", "list"], "BREASTDX_KFP_ENDPOINT"),
        (["pipeline", "compile", "--gcs-root", "gs://b/x"], "BREASTDX_IMAGE"),
        (
            ["pipeline", "compile", "--image", "r/i:t", "--gcs-root", "/tmp/x"],
            "must be a gs:// path",
        ),
        (["run", "create", "--engine", "vertex"], "BREASTDX_VERTEX_PROJECT"),
    ],
)
def test_bad_input_is_one_line(argv, needle, capsys):
    argv = [a.format(port=_free_port()) for a in argv]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_pipeline_and_run(kfp_server, capsys):
    assert (
        cli(
            [
                "pipeline",
                "update",
                "--endpoint",
                kfp_server.endpoint,
                "--pipeline-name",
                "nope",
                "--skip-compile",
                "--package",
                "/nonexistent.yaml",
            ]
        )
        == 2
    )
    assert "no pipeline named 'nope'" in capsys.readouterr().err
    assert cli(["run", "get", "--endpoint", kfp_server.endpoint, "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "no run with id 'no-such-run'" in err and err.count("\n") == 1


def test_version_name_is_the_tfx_cli_form():
    # 2021-05-08 02:00:39 UTC
    assert (
        cluster_configs.version_name("breastdx-idc", now=1620439239)
        == "breastdx-idc_20210508020039"
    )
