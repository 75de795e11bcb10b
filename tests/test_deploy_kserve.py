"""Serving through KServe (overlay gke-kserve, deploy/k8s/components/kserve): the
InferenceService validates against KServe's own CRD schema, carries the model card's
contract, and the web app and `breastdx predict` work against it as they work against
the serving Deployment.

The schema: KServe's CRD (tests/data/kserve, v0.15.2, Apache-2.0; no PyPI package ships
it), its v1beta1 openAPIV3Schema made strict (unknown fields refused, as `kubectl apply`
with strict field validation does) and checked with jsonschema.

The clients: KServe's TensorFlow Serving runtime runs TF Serving with
`--model_name=<InferenceService name> --rest_api_port=8080`, behind the Service
`<name>-predictor` (port 80) in RawDeployment mode. The project's model server stands in
for the TF Serving container (same REST API), serving the model under the
InferenceService's name, behind a stand-in of that Service: the cluster's DNS name and
port 80 lead to it, and it answers KServe's paths only (`/v1/models/<name>…`). The web app
and `breastdx predict` are pointed at the URL and model name the rendered manifests give
the web app.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os

import jsonschema
import pytest
import yaml
from test_deploy_manifests import K8S, SERVED_BY_DEPLOYMENT, fill, of_kind, problems, render
from tools_venv import PROJECT_DIR

from breastdx_core import configs, contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import CLASS_NAMES, RED, LiveServer, add_version, png_bytes  # noqa: E402

CRD = os.path.join(
    PROJECT_DIR, "tests", "data", "kserve", "serving.kserve.io_inferenceservices.yaml.gz"
)
ISVC_FILE = os.path.join(K8S, "components", "kserve", "inferenceservice.yaml")


def strict(schema):
    """The schema with every object that lists its properties closed to others (the API
    server's strict field validation), except where the CRD keeps unknown fields."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def validator():
    with gzip.open(CRD, "rt") as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 1 MB: libyaml
    assert crd["spec"]["names"]["kind"] == "InferenceService"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The gke-kserve overlay filled in as CD fills it."""
    root = fill(tmp_path_factory.mktemp("kserve"))
    return render(os.path.join(root, "overlays", "gke-kserve"))


def _isvc(objects):
    services = of_kind(objects, "InferenceService")
    assert len(services) == 1
    return next(iter(services.values()))


def test_the_inference_service_validates_against_kserves_crd(validator, rendered):
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(_isvc(rendered))
    ]
    assert errors == []
    assert problems("gke-kserve", rendered) == []


@pytest.mark.parametrize(
    "path, value, needle",
    [
        (
            ("spec", "predictor", "model", "storageURI"),
            "gs://b/x",
            "storageURI",
        ),  # KServe spells it storageUri
        (("spec", "predictor", "minReplicas"), "two", "'two' is not of type 'integer'"),
        (("spec", "predictor", "tensorflow2"), {}, "tensorflow2"),
    ],
)
def test_the_schema_check_refuses_what_kserve_refuses(validator, rendered, path, value, needle):
    isvc = yaml.safe_load(yaml.safe_dump(_isvc(rendered)))
    node = isvc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    messages = [e.message for e in validator.iter_errors(isvc)]
    assert any(needle in m for m in messages), messages


def test_it_serves_the_pushed_model_with_the_cards_contract(rendered):
    isvc = _isvc(rendered)
    name = isvc["metadata"]["name"]
    model = isvc["spec"]["predictor"]["model"]
    task = contract.get_task(isvc["metadata"]["annotations"]["breastdx.io/task"])
    pipeline = configs.load(env={}, task=task.name, workdir="gs://example-bucket/breastdx")
    assert name == pipeline.model_name  # TF Serving's --model_name is the InferenceService's name
    assert model["modelFormat"] == {"name": "tensorflow"}
    assert model["storageUri"] == f"{pipeline.serving_root}/{name}"  # where Pusher writes versions
    assert isvc["metadata"]["namespace"] == "breastdx"
    annotations = isvc["metadata"]["annotations"]
    assert annotations["breastdx.io/signature"] == contract.SIGNATURE_BYTES
    assert annotations["breastdx.io/input"] == contract.SERVING_INPUT_BYTES
    assert annotations["breastdx.io/class-names"].split(",") == list(task.class_names)
    assert annotations["breastdx.io/positive-class"] == task.positive_class
    assert annotations["breastdx.io/outputs"].split(",") == [
        contract.OUTPUT_PROBABILITIES,
        contract.OUTPUT_CLASS_NAME,
        contract.OUTPUT_CLASS_INDEX,
        contract.OUTPUT_POSITIVE,
        contract.OUTPUT_OOD,
    ]
    assert annotations["breastdx.io/model-card"].endswith(contract.MODEL_CARD_RELPATH)
    assert annotations["breastdx.io/intended-use"] == contract.RESEARCH_ONLY
    # the runtime's TF Serving is the version the serving Deployment runs
    with open(os.path.join(K8S, "base", "kustomization.yaml")) as f:
        tag = next(
            i["newTag"] for i in yaml.safe_load(f)["images"] if i["name"] == "tensorflow/serving"
        )
    assert model["runtimeVersion"] == tag
    probe = model["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{name}", "port": 8080}


def test_committed_kserve_overlay_names_the_bucket_to_fill():
    found = problems("gke-kserve", render(os.path.join(K8S, "overlays", "gke-kserve")))
    assert any(
        "replace gs://BUCKET/breastdx in deploy/k8s/components/kserve/inferenceservice.yaml" in line
        for line in found
    ), found
    assert "gke-kserve" not in SERVED_BY_DEPLOYMENT


# --- the clients against it -----------------------------------------------------------------
class PredictorService:
    """The `<name>-predictor` Service of RawDeployment mode in front of the runtime's
    container: only KServe's model paths, the request passed on unchanged (Host included)."""

    def __init__(self, upstream_app, model_name: str):
        self.app, self.prefix = upstream_app, f"/v1/models/{model_name}"
        self.paths = []

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        self.paths.append((environ.get("HTTP_HOST"), environ["REQUEST_METHOD"], path))
        if not (path == self.prefix or path.startswith((self.prefix + "/", self.prefix + ":"))):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        return self.app(environ, start_response)


@pytest.fixture
def kserve_endpoint(rendered, tmp_path, tiny_model_dir, monkeypatch):
    """(web app's URL, model name, the Service stand-in): the project's model server under
    the InferenceService's name, reached at the rendered web app's BREASTDX_WEB_SERVER_URL."""
    import urllib3.util.connection

    from serving.server import create_app

    env = {
        e["name"]: e.get("value")
        for e in of_kind(rendered, "Deployment")["webapp"]["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    url, model_name = env["BREASTDX_WEB_SERVER_URL"], env["BREASTDX_WEB_MODEL_NAME"]
    name = _isvc(rendered)["metadata"]["name"]
    assert model_name == name and url == f"http://{name}-predictor"
    root = tmp_path / "mnt-models"  # what the storage initializer copied, as TF Serving sees it
    add_version(root, 1, tiny_model_dir, name=name)
    app = create_app(str(root), start=False)
    app.extensions["model_store"].poll()
    service = PredictorService(app, name)
    live = LiveServer(service)
    real = urllib3.util.connection.create_connection

    def cluster_dns(address, *args, **kwargs):  # <name>-predictor:80 -> the stand-in
        host, port = address
        if host == f"{name}-predictor" and port == 80:
            return real(("127.0.0.1", live.port), *args, **kwargs)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", cluster_dns)
    yield url, model_name, service
    live.close()
    app.extensions["model_store"].stop()


def test_the_web_app_predicts_through_the_inference_service(kserve_endpoint, web_app_factory):
    url, model_name, service = kserve_endpoint
    client = web_app_factory(SERVER_URL=url, MODEL_NAME=model_name).test_client()
    response = client.post(
        "/api/predict",
        data={"file": [(io.BytesIO(png_bytes(RED)), "red.png")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.json
    assert response.json["research_only"] == contract.RESEARCH_ONLY
    assert f"{CLASS_NAMES[1]}" in str(response.json)
    hosts = {host for host, _, _ in service.paths}
    assert hosts == {
        f"{model_name}-predictor"
    }  # the Service's name, as the cluster's DNS routes it
    assert "POST" in {m for _, m, _ in service.paths} and any(
        p.endswith(":predict") for _, _, p in service.paths
    )


def test_breastdx_predict_through_the_inference_service(kserve_endpoint, tmp_path):
    from breastdx_cli.predict import add_predict_parser, run_predict

    url, model_name, service = kserve_endpoint
    image = tmp_path / "red.png"
    image.write_bytes(png_bytes(RED))
    parser = argparse.ArgumentParser()
    add_predict_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["predict", str(image), "--server", url, "--model", model_name])
    out = io.StringIO()
    assert run_predict(args, out) == 0, out.getvalue()
    assert f"{CLASS_NAMES[1]} p=" in out.getvalue()
    assert f"model: {model_name} version 1 at {url}" in out.getvalue()
    assert out.getvalue().rstrip().endswith(contract.RESEARCH_ONLY)
    assert all(p.startswith(f"/v1/models/{model_name}") for _, _, p in service.paths)


def test_a_wrong_model_name_is_refused_by_the_service(kserve_endpoint):
    from webapp.clients import PredictionError, RestClient

    url, _, _ = kserve_endpoint
    with pytest.raises(PredictionError) as err:
        RestClient(url, "breastdx-busi").newest_version()
    assert err.value.status == 404
