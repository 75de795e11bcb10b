"""`breastdx pipeline …` / `breastdx run …` (breastdx_cli/kfp.py) against a local server
that speaks the KFP 2 REST API (v2beta1) as far as kfp.Client uses it.

The real kfp.Client talks to it over HTTP; the tests assert what the client sent
(multipart uploads, version names, run bodies) and what a person sees on bad input.
"""
from __future__ import annotations

import argparse
import cgi
import io
import json
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from breastdx_core import cluster_configs
from breastdx_cli import kfp as kfp_cli

API = "/apis/v2beta1"
SPEC = {"pipelineInfo": {"name": "breastdx-idc"}, "root": {"dag": {"tasks": {}}}, "schemaVersion": "2.0.0",
        "sdkVersion": "tfx-1.16.0", "components": {}, "deploymentSpec": {"executors": {}}}


class FakeKfp:
    """State and request log of the fake KFP API server."""

    def __init__(self) -> None:
        self.pipelines: Dict[str, Dict[str, Any]] = {}
        self.versions: Dict[str, List[Dict[str, Any]]] = {}
        self.experiments: Dict[str, Dict[str, Any]] = {}
        self.runs: Dict[str, Dict[str, Any]] = {}
        self.requests: List[Dict[str, Any]] = []
        self.lock = threading.Lock()

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def _reply(self, status: int, body: Dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {"method": method, "path": url.path, "query": query,
                          "authorization": self.headers.get("Authorization")}
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("multipart/form-data"):
                    form = cgi.FieldStorage(fp=io.BytesIO(raw), environ={"REQUEST_METHOD": "POST"},
                                            headers={"content-type": ctype, "content-length": str(length)})
                    record["file_name"] = form["uploadfile"].filename
                    record["file"] = form["uploadfile"].value.decode()
                elif raw:
                    record["json"] = json.loads(raw)
                with fake.lock:
                    fake.requests.append(record)
                    status, body = fake.route(method, url.path, query, record)
                self._reply(status, body)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        return Handler

    @staticmethod
    def _name_filter(query: Dict[str, str]):
        if "filter" not in query:
            return None
        return json.loads(query["filter"])["predicates"][0]["stringValue"]

    def route(self, method: str, path: str, query: Dict[str, str], record: Dict[str, Any]):
        now = "2021-05-08T02:00:39Z"
        if path == f"{API}/healthz":
            return 200, {"multi_user": False}
        if path == f"{API}/pipelines" and method == "GET":
            name = self._name_filter(query)
            items = [p for p in self.pipelines.values() if name is None or p["display_name"] == name]
            return 200, ({"pipelines": items, "total_size": len(items)} if items else {})
        if path == f"{API}/pipelines/upload":
            pid = str(uuid.uuid4())
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": query["name"], "created_at": now}
            self.versions[pid] = [{"pipeline_id": pid, "pipeline_version_id": str(uuid.uuid4()),
                                   "display_name": query["name"], "created_at": now}]
            return 200, self.pipelines[pid]
        if path == f"{API}/pipelines/upload_version":
            pid = query["pipelineid"]
            if pid not in self.pipelines:
                return 404, {"error_message": f"pipeline {pid} not found", "code": 5}
            version = {"pipeline_id": pid, "pipeline_version_id": str(uuid.uuid4()), "display_name": query["name"],
                       "created_at": now}
            self.versions[pid].insert(0, version)  # newest first, as sort_by "created_at desc"
            return 200, version
        match = re.fullmatch(f"{API}/pipelines/([^/]+)/versions(?:/([^/]+))?", path)
        if match:
            pid, vid = match.groups()
            if method == "DELETE":
                self.versions[pid] = [v for v in self.versions[pid] if v["pipeline_version_id"] != vid]
                return 200, {}
            items = self.versions.get(pid, [])[:int(query.get("page_size", 10))]
            return 200, ({"pipeline_versions": items, "total_size": len(items)} if items else {})
        match = re.fullmatch(f"{API}/pipelines/([^/]+)", path)
        if match and method == "DELETE":
            if self.versions.get(match.group(1)):
                return 400, {"error_message": "pipeline has versions", "code": 9}
            self.pipelines.pop(match.group(1))
            return 200, {}
        if path == f"{API}/experiments" and method == "GET":
            name = self._name_filter(query)
            items = [e for e in self.experiments.values() if e["display_name"] == name]
            return 200, ({"experiments": items} if items else {})
        if path == f"{API}/experiments" and method == "POST":
            eid = str(uuid.uuid4())
            self.experiments[eid] = {"experiment_id": eid, "display_name": record["json"]["display_name"]}
            return 200, self.experiments[eid]
        if path == f"{API}/runs" and method == "POST":
            rid = str(uuid.uuid4())
            self.runs[rid] = dict(record["json"], run_id=rid, state="PENDING", created_at=now, gets=0)
            return 200, {k: v for k, v in self.runs[rid].items() if k != "gets"}
        if path == f"{API}/runs" and method == "GET":
            return 200, {"runs": [{k: v for k, v in r.items() if k != "gets"} for r in self.runs.values()],
                         "total_size": len(self.runs)}
        match = re.fullmatch(f"{API}/runs/([^/]+)", path)
        if match:
            run = self.runs.get(match.group(1))
            if run is None:
                return 404, {"error_message": "run not found", "code": 5}
            run["gets"] += 1
            if run["gets"] > 1:
                run["state"] = "SUCCEEDED"  # a run that finishes while it is being waited for
            return 200, {k: v for k, v in run.items() if k != "gets"}
        return 404, {"error_message": f"fake KFP: no route for {method} {path}", "code": 5}


@pytest.fixture()
def kfp_server():
    fake = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
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


def cli(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="breastdx")
    kfp_cli.add_parsers(parser.add_subparsers(dest="command", required=True))
    return kfp_cli.dispatch(parser.parse_args(argv))


def uploads(fake: FakeKfp, kind: str) -> List[Dict[str, Any]]:
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
    assert len(versions) == 2  # create's dated version, then update's
    pipeline_id = next(iter(kfp_server.pipelines))
    assert all(v["query"]["pipelineid"] == pipeline_id for v in versions)
    assert all(re.fullmatch(r"breastdx-idc_\d{14}", v["query"]["name"]) for v in versions)
    newest = kfp_server.versions[pipeline_id][0]["pipeline_version_id"]

    capsys.readouterr()
    assert cli(["run", "create", "--endpoint", kfp_server.endpoint, "--gcs-root", "gs://bucket/breastdx",
                "--tree-fingerprint", "digest-of-the-images", "--wait", "--timeout", "60"]) == 0
    body = [r for r in kfp_server.requests if r["method"] == "POST" and r["path"] == f"{API}/runs"][0]["json"]
    assert body["pipeline_version_reference"] == {"pipeline_id": pipeline_id, "pipeline_version_id": newest}
    assert body["runtime_config"]["pipeline_root"] == "gs://bucket/breastdx/pipelines/breastdx-idc"
    assert body["runtime_config"]["parameters"] == {"tree_fingerprint": "digest-of-the-images"}  # ImageExampleGen's key
    assert kfp_server.experiments[body["experiment_id"]]["display_name"] == "breastdx"
    out = capsys.readouterr().out
    assert "state=SUCCEEDED" in out

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
    assert deletes[-1].count("/") == 4 and all("/versions/" in d for d in deletes[:-1]) and len(deletes) == 3


def test_json_package_is_unwrapped_for_kfp(kfp_server, tmp_path):
    """A Vertex-style PipelineJob JSON uploads as its PipelineSpec YAML."""
    job = tmp_path / "breastdx-idc.json"
    job.write_text(json.dumps({"displayName": "breastdx-idc", "pipelineSpec": SPEC,
                               "runtimeConfig": {"gcsOutputDirectory": "gs://b/x"}}))
    assert cli(["pipeline", "create", "--endpoint", kfp_server.endpoint, "--package", str(job),
                "--skip-compile"]) == 0
    sent = yaml.safe_load(uploads(kfp_server, "upload")[0]["file"])
    assert sent == SPEC


def test_a_package_kfp_refuses_is_not_uploaded(kfp_server, tmp_path, capsys):
    """A resolver executor (what a TFX Resolver compiles to): one line naming the fix, exit 2,
    nothing uploaded."""
    spec = dict(SPEC, root={"dag": {"tasks": {"LatestBlessedModel": {"componentRef": {"name": "LatestBlessedModel"}}}}},
                components={"LatestBlessedModel": {"executorLabel": "LatestBlessedModel_executor"}},
                deploymentSpec={"executors": {"LatestBlessedModel_executor": {"resolver": {}}}})
    package = tmp_path / "breastdx-idc.yaml"
    package.write_text(yaml.safe_dump(spec))
    assert cli(["pipeline", "create", "--endpoint", kfp_server.endpoint, "--package", str(package),
                "--skip-compile"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "refuses LatestBlessedModel: resolver executors not implemented" in line
    assert uploads(kfp_server, "upload") == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, needle", [
    (["pipeline", "list", "--endpoint", "http://127.0.0.1:{port}"], "cannot reach the Kubeflow Pipelines endpoint"),
    (["pipeline", "list"], "BREASTDX_KFP_ENDPOINT"),
    (["pipeline", "compile", "--gcs-root", "gs://b/x"], "BREASTDX_IMAGE"),
    (["pipeline", "compile", "--image", "r/i:t", "--gcs-root", "/tmp/x"], "must be a gs:// path"),
    (["run", "create", "--engine", "vertex"], "BREASTDX_VERTEX_PROJECT"),
])
def test_bad_input_is_one_line(argv, needle, capsys):
    argv = [a.format(port=_free_port()) for a in argv]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_pipeline_and_run(kfp_server, capsys):
    assert cli(["pipeline", "update", "--endpoint", kfp_server.endpoint, "--pipeline-name", "nope",
                "--skip-compile", "--package", "/nonexistent.yaml"]) == 2
    assert "no pipeline named 'nope'" in capsys.readouterr().err
    assert cli(["run", "get", "--endpoint", kfp_server.endpoint, "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "no run with id 'no-such-run'" in err and err.count("\n") == 1


def test_version_name_is_the_tfx_cli_form():
    # 2021-05-08 02:00:39 UTC
    assert cluster_configs.version_name("breastdx-idc", now=1620439239) == "breastdx-idc_20210508020039"
