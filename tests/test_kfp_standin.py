"""The KFP 2 API stand-in (tests/kfp_standin.py) is strict: it refuses what KFP's API
definition does not allow, so the CLI tests that pass against it prove something."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import kfp_standin
import pytest
from kfp_standin import API


@pytest.fixture(scope="module")
def standin():
    kfp, server = kfp_standin.start()
    yield kfp
    server.shutdown()
    server.server_close()


def call(standin, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        standin.endpoint + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_the_definition_is_kfp_server_apis():
    routes = {(op.method, op.path) for op in kfp_standin.api_definition()}
    for route in [
        ("POST", f"{API}/pipelines/upload"),
        ("POST", f"{API}/pipelines/upload_version"),
        ("GET", f"{API}/pipelines/{{pipeline_id}}/versions"),
        ("POST", f"{API}/runs"),
        ("POST", f"{API}/runs/{{run_id}}:terminate"),
        ("POST", f"{API}/runs/{{run_id}}:retry"),
        ("POST", f"{API}/recurringruns"),
        ("GET", f"{API}/healthz"),
    ]:
        assert route in routes


@pytest.mark.parametrize(
    "method, path, body, status, needle",
    [
        ("GET", f"{API}/no-such-thing", None, 404, "Not Found"),
        ("PUT", f"{API}/runs", {}, 405, "Method Not Allowed"),
        ("GET", f"{API}/runs?pagesize=3", None, 400, "unknown query parameter 'pagesize'"),
        (
            "POST",
            f"{API}/runs",
            {
                "display_name": "r",
                "pipeline_version_reference": {"pipeline_id": "p"},
                "runtime_config": {"params": {}},
            },
            400,
            'unknown field "params"',
        ),
        ("POST", f"{API}/runs", {"display_name": 7}, 400, "expected str"),
        (
            "POST",
            f"{API}/recurringruns",
            {"display_name": "r", "mode": "ON"},
            400,
            "'ON' is not one of",
        ),
        ("POST", f"{API}/runs", {"display_name": "r"}, 400, "no pipeline version or spec"),
        ("GET", f"{API}/runs/nope", None, 404, "not found"),
        ("POST", f"{API}/runs/nope:retry", None, 404, "not found"),
    ],
)
def test_refuses_what_kfp_refuses(standin, method, path, body, status, needle):
    code, answer = call(standin, method, path, body)
    assert code == status and needle in answer["message"], answer
    assert set(answer) == {"code", "message", "details"}  # googlerpc Status, as KFP answers


def test_answers_fit_the_response_models():
    with pytest.raises(kfp_standin.Invalid, match='unknown field "id"'):
        kfp_standin.check_value({"id": "x"}, "V2beta1Pipeline", "answer")  # the v1 field name
    kfp_standin.check_value(
        {"pipeline_id": "x", "display_name": "n", "created_at": "2026-01-01T00:00:00Z"},
        "V2beta1Pipeline",
        "answer",
    )
