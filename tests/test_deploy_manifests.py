"""deploy/k8s: every kustomize overlay renders, every object validates offline
(kubernetes-validate --strict), and the rendered objects keep their promises, checked by
deploy/k8s/check_rendered.py (which CD also runs before it applies): requests and limits
and a locked-down securityContext on every container, NetworkPolicies (only the web app
reaches the model server, which reaches nothing in the cluster), PodDisruptionBudgets,
TLS and IAP on the gke overlays, sign-in settings complete, images pinned by digest;
here also: GPU serving off the Trainer's pool.

The committed gke overlays hold no project's values: CD fills them (settings.env, the
bucket, `kustomize edit set image … @sha256:…`). :func:`fill` does the same to a copy,
and the committed overlays must fail with a message naming each setting to fill in.
Dockerfiles: hadolint here; their build contexts in tests/test_deploy_images.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml
from tools_venv import PROJECT_DIR, run

from breastdx_core import cluster_configs

_spec = importlib.util.spec_from_file_location(
    "check_rendered", os.path.join(PROJECT_DIR, "deploy", "k8s", "check_rendered.py")
)
check_rendered = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_rendered)
problems, of_kind, env_of = check_rendered.problems, check_rendered.of_kind, check_rendered.env_of
SETTINGS_FILE = check_rendered.SETTINGS_FILE

K8S = os.path.join(PROJECT_DIR, "deploy", "k8s")
OVERLAYS = sorted(os.listdir(os.path.join(K8S, "overlays")))
GKE = [o for o in OVERLAYS if o.startswith("gke")]
# the kserve component replaces the serving Deployment
SERVED_BY_DEPLOYMENT = [o for o in OVERLAYS if o != "gke-kserve"]

SETTINGS = {
    "DOMAIN": "breastdx.example.org",
    "IAP_AUDIENCE": "/projects/123456789012/global/backendServices/4567890123456789",
    "SERVING_SERVICE_ACCOUNT": "breastdx-serving@example-project.iam.gserviceaccount.com",
}
BUCKET_ROOT = "gs://example-bucket/breastdx"
DIGEST = "sha256:" + "ab" * 32
GPU_DIGEST = "sha256:" + "cd" * 32
IMAGES = {
    "breastdx-webapp": f"europe-west4-docker.pkg.dev/example-project/breastdx/breastdx-webapp@{DIGEST}",
    "tensorflow/serving": f"tensorflow/serving@{DIGEST}",
}
GPU_IMAGES = {"tensorflow/serving": f"tensorflow/serving@{GPU_DIGEST}"}  # the -gpu image's digest
TRAINER_POOL = "gpu"  # docs/cluster.md: the Trainer's node pool
SERVING_GPU_POOL = "serving-gpu"


# --- rendering ------------------------------------------------------------------------------
def render(overlay_dir: str) -> list[dict[str, Any]]:
    result = run("kubectl", ["kustomize", overlay_dir])
    assert result.returncode == 0, f"{overlay_dir}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def fill(
    tmp_path,
    settings: dict[str, str] | None = None,
    images: dict[str, str] | None = None,
    bucket_root: str | None = BUCKET_ROOT,
    gpu_images: dict[str, str] | None = None,
) -> str:
    """A copy of deploy/k8s with the gke settings filled in as CD fills them; returns its root.

    ``images`` are written the way ``kustomize edit set image NAME=NEWNAME@DIGEST`` writes
    them (``newName`` + ``digest`` in the overlay's ``images:``).
    """
    root = str(tmp_path / "k8s")
    shutil.copytree(K8S, root)
    gke = os.path.join(root, "overlays", "gke")
    settings = SETTINGS if settings is None else settings
    with open(os.path.join(gke, "settings.env"), "w") as f:
        f.writelines(f"{key}={value}\n" for key, value in settings.items())
    if bucket_root:  # CD's sed, on models.config and the KServe InferenceService
        for path in (
            os.path.join(gke, "models.config"),
            os.path.join(root, "components", "kserve", "inferenceservice.yaml"),
        ):
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace("gs://BUCKET/breastdx", bucket_root))
    set_images(gke, IMAGES if images is None else images)
    set_images(
        os.path.join(root, "overlays", "gke-gpu"), GPU_IMAGES if gpu_images is None else gpu_images
    )
    return root


def set_images(overlay_dir: str, images: dict[str, str]) -> None:
    """What `kustomize edit set image NAME=NEWNAME@DIGEST` writes into a kustomization."""
    kustomization = os.path.join(overlay_dir, "kustomization.yaml")
    with open(kustomization) as f:
        doc = yaml.safe_load(f)
    entries = {e["name"]: e for e in doc.get("images", [])}
    for name, ref in images.items():
        new_name, digest = ref.split("@")
        entries[name] = {"name": name, "newName": new_name, "digest": digest}
    doc["images"] = list(entries.values())
    with open(kustomization, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """{overlay: (path of the rendered YAML, [objects])} for the filled-in copy."""
    tmp = tmp_path_factory.mktemp("filled")
    root = fill(tmp)
    out = {}
    for overlay in OVERLAYS:
        objects = render(os.path.join(root, "overlays", overlay))
        path = tmp / f"{overlay}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        out[overlay] = (str(path), objects)
    return out


# --- tests ----------------------------------------------------------------------------------
def test_overlays_exist():
    assert {"local", "gke", "gke-gpu"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(filled, overlay):
    result = run("kubernetes-validate", ["--strict", "--quiet", filled[overlay][0]])
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_unknown_fields(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {bogus: 1, ports: [{port: 80}]}\n"
    )
    assert run("kubernetes-validate", ["--strict", "--quiet", str(bad)]).returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_filled_overlays_keep_every_promise(filled, overlay):
    assert problems(overlay, filled[overlay][1]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_committed_overlays_render_and_name_what_to_fill(overlay):
    found = problems(overlay, render(os.path.join(K8S, "overlays", overlay)))
    if overlay == "local":
        assert found == []
        return
    text = "\n".join(found)
    settings = [
        "set DOMAIN",
        "set IAP_AUDIENCE",
        "set SERVING_SERVICE_ACCOUNT",
        "gs://BUCKET/breastdx",
        "kustomize edit set image breastdx-webapp=",
    ]
    if overlay in SERVED_BY_DEPLOYMENT:
        settings.append("kustomize edit set image tensorflow/serving=")
    else:  # KServe's runtime image comes from its ServingRuntime; the bucket from the component
        settings.append("in deploy/k8s/components/kserve/inferenceservice.yaml")
    for setting in settings:
        assert setting in text, f"{overlay}: nothing says {setting!r}:\n{text}"


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            {"images": {"tensorflow/serving": IMAGES["tensorflow/serving"]}},
            "webapp/webapp: image breastdx-webapp:latest is not pinned by digest",
        ),
        ({"settings": dict(SETTINGS, DOMAIN="")}, f"set DOMAIN in {SETTINGS_FILE}"),
        (
            {"settings": dict(SETTINGS, IAP_AUDIENCE="")},
            "BREASTDX_WEB_AUTH=iap without a valid audience",
        ),
        ({"settings": dict(SETTINGS, SERVING_SERVICE_ACCOUNT="")}, "set SERVING_SERVICE_ACCOUNT"),
        ({"bucket_root": None}, "replace gs://BUCKET/breastdx"),
    ],
)
def test_a_setting_left_out_is_named(tmp_path, change, expected):
    root = fill(tmp_path, **change)
    found = problems("gke", render(os.path.join(root, "overlays", "gke")))
    assert len(found) == 1 and expected in found[0], found


def test_the_checker_as_cd_runs_it(filled, tmp_path):
    """`python3 deploy/k8s/check_rendered.py RENDERED OVERLAY`: exit 0 when filled, exit 1
    naming the settings on the committed overlay (CD's deploy job stops there)."""
    script = os.path.join(K8S, "check_rendered.py")
    ok = subprocess.run(
        [sys.executable, script, filled["gke"][0], "gke"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    committed = tmp_path / "gke.yaml"
    committed.write_text(yaml.safe_dump_all(render(os.path.join(K8S, "overlays", "gke"))))
    bad = subprocess.run(
        [sys.executable, script, str(committed), "gke"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and f"set DOMAIN in {SETTINGS_FILE}" in bad.stderr


def test_the_checks_catch_a_root_container_and_an_open_model_server(filled):
    objects = yaml.safe_load_all(open(filled["gke"][0]).read())
    objects = [o for o in objects if o]
    serving = of_kind(objects, "Deployment")["serving"]["spec"]["template"]["spec"]
    serving["securityContext"].pop("runAsNonRoot")
    serving["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    of_kind(objects, "NetworkPolicy")["serving"]["spec"]["ingress"][0]["from"].append(
        {"namespaceSelector": {}}
    )
    found = "\n".join(problems("gke", objects))
    assert "serving/tensorflow-serving: securityContext.runAsNonRoot must be true" in found
    assert "readOnlyRootFilesystem" in found and "admit only the web app" in found


def test_serving_probes_ask_for_the_configured_model(filled):
    # the KServe overlay's equivalent: tests/test_deploy_kserve.py
    assert set(OVERLAYS) - set(SERVED_BY_DEPLOYMENT) == {"gke-kserve"}
    for overlay in SERVED_BY_DEPLOYMENT:
        objects = filled[overlay][1]
        config = next(
            c
            for c in of_kind(objects, "ConfigMap").values()
            if "models.config" in c.get("data", {})
        )
        model_name = re.search(r'name:\s*"([^"]+)"', config["data"]["models.config"]).group(1)
        container = of_kind(objects, "Deployment")["serving"]["spec"]["template"]["spec"][
            "containers"
        ][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == f"/v1/models/{model_name}"
            assert ports.get(get["port"], get["port"]) == 8501
        assert "--model_config_file=/config/models.config" in container["args"]
        assert (
            of_kind(objects, "HorizontalPodAutoscaler")["serving"]["spec"]["scaleTargetRef"]["name"]
            == "serving"
        )
        env = env_of(of_kind(objects, "Deployment")["webapp"])
        assert (
            env["BREASTDX_WEB_SERVER_URL"] == "http://serving:8501"
            and env["BREASTDX_WEB_MODEL_NAME"] == model_name
        )
        backend = of_kind(objects, "Ingress")["webapp"]["spec"]["rules"][0]["http"]["paths"][0][
            "backend"
        ]
        assert backend["service"]["name"] in of_kind(objects, "Service")


def test_serving_is_cpu_by_default_and_gpu_serving_keeps_off_the_trainers_pool(filled):
    cpu = of_kind(filled["gke"][1], "Deployment")["serving"]["spec"]["template"]["spec"]
    assert (
        "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
        and "nodeSelector" not in cpu
    )
    gpu = of_kind(filled["gke-gpu"][1], "Deployment")["serving"]["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (
        gpu["containers"][0]["image"] == GPU_IMAGES["tensorflow/serving"]
    )  # the -gpu digest, not the CPU one
    assert (
        gpu["nodeSelector"]
        == {"cloud.google.com/gke-nodepool": SERVING_GPU_POOL}
        != {"cloud.google.com/gke-nodepool": TRAINER_POOL}
    )
    assert {
        "key": "breastdx.io/pool",
        "operator": "Equal",
        "value": SERVING_GPU_POOL,
        "effect": "NoSchedule",
    } in gpu["tolerations"]
    hpa = of_kind(filled["gke-gpu"][1], "HorizontalPodAutoscaler")["serving"]["spec"]
    assert hpa["maxReplicas"] <= 2  # one GPU each on a pool of at most two nodes
    # the docs create the pools these names refer to: the Trainer's, and serving's with its taint
    with open(os.path.join(PROJECT_DIR, "docs", "cluster.md")) as f:
        docs = f.read()
    assert re.search(rf"node-pools create {TRAINER_POOL} ", docs)
    assert re.search(
        rf"node-pools create {SERVING_GPU_POOL} .*?--node-taints breastdx\.io/pool={SERVING_GPU_POOL}:"
        r"NoSchedule",
        docs,
        re.S,
    )


@pytest.mark.parametrize("dockerfile", ["pipeline.Dockerfile", "webapp.Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile):
    result = run("hadolint", [os.path.join(PROJECT_DIR, "deploy", dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_pipeline_image_matches_cluster_settings():
    with open(os.path.join(PROJECT_DIR, "deploy", "pipeline.Dockerfile")) as f:
        text = f.read()
    assert re.search(r"^FROM tensorflow/tfx:1\.16\.0$", text, re.M)
    workdir = re.search(r"^WORKDIR (\S+)$", text, re.M).group(1)
    assert (
        workdir == cluster_configs.ClusterConfig().image_project_dir
    )  # where compiled specs point
    assert "TF_USE_LEGACY_KERAS=1" in text


def test_webapp_image_has_no_tensorflow():
    with open(os.path.join(PROJECT_DIR, "deploy", "webapp-requirements.txt")) as f:
        requirements = [
            line.split("#")[0].strip().lower() for line in f if line.split("#")[0].strip()
        ]
    assert requirements and not [
        r for r in requirements if r.startswith(("tensorflow", "tfx", "keras", "tf-"))
    ]


# --- deploy/kfp: Kubeflow Pipelines' own settings -------------------------------------------
KFP_DIR = os.path.join(PROJECT_DIR, "deploy", "kfp")


def fill_kfp(tmp_path, root: str = BUCKET_ROOT) -> str:
    """A copy of deploy/kfp with the bucket filled in as docs/cluster.md's `sed` does."""
    copy = str(tmp_path / "kfp")
    shutil.copytree(KFP_DIR, copy)
    path = os.path.join(copy, "kfp-launcher.yaml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("gs://BUCKET/breastdx", root))
    return copy


def test_kfp_launcher_config_renders_validates_and_names_the_root(tmp_path):
    objects = render(fill_kfp(tmp_path))
    rendered = tmp_path / "kfp.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    result = run("kubernetes-validate", ["--strict", "--quiet", str(rendered)])
    assert result.returncode == 0, result.stdout + result.stderr
    config = of_kind(objects, "ConfigMap")["kfp-launcher"]
    namespace = cluster_configs.ClusterConfig().kfp_namespace
    assert config["metadata"]["namespace"] == namespace == "kubeflow"
    # the root the `breastdx pipeline|run` verbs use: <gcs root>/pipelines (KFP adds name/run)
    assert config["data"] == {"defaultPipelineRoot": f"{BUCKET_ROOT}/pipelines"}
    assert problems("kfp", objects) == []
    checker = os.path.join(K8S, "check_rendered.py")
    ok = subprocess.run(
        [sys.executable, checker, str(rendered), "kfp"], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("root", [None, "minio://mlpipeline/v2/artifacts", "s3://b/breastdx"])
def test_kfp_launcher_check_refuses_a_root_tfx_cannot_write(tmp_path, root):
    objects = render(KFP_DIR if root is None else fill_kfp(tmp_path, root))
    found = problems("kfp", objects)
    assert len(found) == 1, found
    assert "replace gs://BUCKET/breastdx in deploy/kfp/kfp-launcher.yaml" in found[0]
    assert problems("kfp", []) == [
        "no kfp-launcher ConfigMap (KFP's driver would use minio://mlpipeline/v2/artifacts)"
    ]
