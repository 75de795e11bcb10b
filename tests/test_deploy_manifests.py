"""deploy/: every kustomize overlay renders and every object validates offline
(kubernetes-validate --strict); what the manifests promise (probes on the model's
status, requests and limits, the GPU node pool) holds in the rendered output; the
Dockerfiles pass hadolint and agree with the cluster settings."""
from __future__ import annotations

import os
import re

import pytest
import yaml

from pipeline import cluster_configs
from tools_venv import PROJECT_DIR, run

K8S = os.path.join(PROJECT_DIR, "deploy", "k8s")
OVERLAYS = sorted(os.listdir(os.path.join(K8S, "overlays")))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{overlay: (path of the rendered YAML, [objects])}."""
    out = {}
    folder = tmp_path_factory.mktemp("k8s")
    for overlay in OVERLAYS:
        result = run("kubectl", ["kustomize", os.path.join(K8S, "overlays", overlay)])
        assert result.returncode == 0, f"{overlay}: {result.stderr}"
        path = folder / f"{overlay}.yaml"
        path.write_text(result.stdout)
        out[overlay] = (str(path), [doc for doc in yaml.safe_load_all(result.stdout) if doc])
    return out


def _objects(rendered, overlay, kind):
    return {o["metadata"]["name"]: o for o in rendered[overlay][1] if o["kind"] == kind}


def test_overlays_exist():
    assert {"local", "gke"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(rendered, overlay):
    result = run("kubernetes-validate", ["--strict", "--quiet", rendered[overlay][0]])
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_unknown_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {bogus: 1, ports: [{port: 80}]}\n")
    assert run("kubernetes-validate", ["--strict", "--quiet", str(bad)]).returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_requests_and_limits_everywhere(rendered, overlay):
    for deployment in _objects(rendered, overlay, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container.get("resources", {})
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(key, {})), \
                    f"{overlay}: {deployment['metadata']['name']}/{container['name']} lacks {key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_probes_ask_for_the_configured_model(rendered, overlay):
    config = next(iter(_objects(rendered, overlay, "ConfigMap").values()))["data"]["models.config"]
    model_name = re.search(r'name:\s*"([^"]+)"', config).group(1)
    container = _objects(rendered, overlay, "Deployment")["serving"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == f"/v1/models/{model_name}"
        assert ports.get(get["port"], get["port"]) == 8501
    assert "--model_config_file=/config/models.config" in container["args"]
    hpa = _objects(rendered, overlay, "HorizontalPodAutoscaler")["serving"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "serving"
    # the web app reaches TF Serving through its Service
    webapp = _objects(rendered, overlay, "Deployment")["webapp"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in webapp["env"]}
    assert env["BREASTDX_WEB_SERVER_URL"] == "http://serving:8501" and env["BREASTDX_WEB_MODEL_NAME"] == model_name
    ingress = _objects(rendered, overlay, "Ingress")["webapp"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend in _objects(rendered, overlay, "Service")


def test_gke_serves_from_the_pipeline_gcs_root(rendered):
    config = next(iter(_objects(rendered, "gke", "ConfigMap").values()))["data"]["models.config"]
    assert re.search(r'base_path:\s*"gs://[^"]+/serving/', config)


def test_gpu_serving_lands_on_the_gpu_pool(rendered):
    spec = _objects(rendered, "gke-gpu", "Deployment")["serving"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["containers"][0]["image"].endswith("-gpu")
    assert "cloud.google.com/gke-accelerator" in spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    cpu_only = _objects(rendered, "gke", "Deployment")["serving"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_only["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize("dockerfile", ["pipeline.Dockerfile", "webapp.Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile):
    result = run("hadolint", [os.path.join(PROJECT_DIR, "deploy", dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_pipeline_image_matches_cluster_settings():
    with open(os.path.join(PROJECT_DIR, "deploy", "pipeline.Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^FROM tensorflow/tfx:1\.16\.0$", text, re.M)
    workdir = re.search(r"^WORKDIR (\S+)$", text, re.M).group(1)
    assert workdir == cluster_configs.ClusterConfig().image_project_dir  # where compiled specs point
    assert "TF_USE_LEGACY_KERAS=1" in text


def test_webapp_image_has_no_tensorflow():
    with open(os.path.join(PROJECT_DIR, "deploy", "webapp-requirements.txt")) as f:
        requirements = [line.split("#")[0].strip().lower() for line in f if line.split("#")[0].strip()]
    assert requirements and not [r for r in requirements if r.startswith(("tensorflow", "tfx", "keras", "tf-"))]
    with open(os.path.join(PROJECT_DIR, "deploy", "webapp.Dockerfile")) as f:
        copies = [line.split()[1:-1] for line in f if line.startswith("COPY")]
    assert sorted(src for srcs in copies for src in srcs) == [
        "components/__init__.py", "components/image_ingest/__init__.py", "components/image_ingest/image_files.py",
        "deploy/webapp-requirements.txt", "pipeline/__init__.py", "pipeline/contract.py", "webapp/"]
