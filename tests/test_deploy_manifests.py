"""deploy/k8s: every kustomize overlay renders, every object validates offline
(kubernetes-validate --strict), and the rendered objects keep their promises
(:func:`problems`): requests and limits and a locked-down securityContext on every
container, NetworkPolicies (only the web app reaches the model server, which reaches
nothing in the cluster), PodDisruptionBudgets, TLS and IAP on the gke overlays, sign-in
settings complete, images pinned by digest, GPU serving off the Trainer's pool.

The committed gke overlays hold no project's values: CD fills them (settings.env, the
bucket, `kustomize edit set image … @sha256:…`). :func:`fill` does the same to a copy,
and the committed overlays must fail with a message naming each setting to fill in.
Dockerfiles: hadolint here; their build contexts in tests/test_deploy_images.py.
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Any, Dict, List, Optional

import pytest
import yaml

from pipeline import cluster_configs
from tools_venv import PROJECT_DIR, run

K8S = os.path.join(PROJECT_DIR, "deploy", "k8s")
OVERLAYS = sorted(os.listdir(os.path.join(K8S, "overlays")))
GKE = [o for o in OVERLAYS if o.startswith("gke")]

SETTINGS = {"DOMAIN": "breastdx.example.org",
            "IAP_AUDIENCE": "/projects/123456789012/global/backendServices/4567890123456789",
            "SERVING_SERVICE_ACCOUNT": "breastdx-serving@example-project.iam.gserviceaccount.com"}
BUCKET_ROOT = "gs://example-bucket/breastdx"
DIGEST = "sha256:" + "ab" * 32
GPU_DIGEST = "sha256:" + "cd" * 32
IMAGES = {"breastdx-webapp": f"europe-west4-docker.pkg.dev/example-project/breastdx/breastdx-webapp@{DIGEST}",
          "tensorflow/serving": f"tensorflow/serving@{DIGEST}"}
GPU_IMAGES = {"tensorflow/serving": f"tensorflow/serving@{GPU_DIGEST}"}  # the -gpu image's digest
TRAINER_POOL = "gpu"  # docs/cluster.md: the Trainer's node pool
SERVING_GPU_POOL = "serving-gpu"
IAP_AUDIENCE_FORM = re.compile(r"^/projects/\d+/global/backendServices/\d+$")
DOMAIN_FORM = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
GOOGLE_LB_RANGES = {"130.211.0.0/22", "35.191.0.0/16"}
SETTINGS_FILE = "deploy/k8s/overlays/gke/settings.env"


# --- rendering ------------------------------------------------------------------------------
def render(overlay_dir: str) -> List[Dict[str, Any]]:
    result = run("kubectl", ["kustomize", overlay_dir])
    assert result.returncode == 0, f"{overlay_dir}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def fill(tmp_path, settings: Optional[Dict[str, str]] = None, images: Optional[Dict[str, str]] = None,
         bucket_root: Optional[str] = BUCKET_ROOT, gpu_images: Optional[Dict[str, str]] = None) -> str:
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
    if bucket_root:
        path = os.path.join(gke, "models.config")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("gs://BUCKET/breastdx", bucket_root))
    set_images(gke, IMAGES if images is None else images)
    set_images(os.path.join(root, "overlays", "gke-gpu"), GPU_IMAGES if gpu_images is None else gpu_images)
    return root


def set_images(overlay_dir: str, images: Dict[str, str]) -> None:
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


def of_kind(objects, kind: str) -> Dict[str, Dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_of(deployment) -> Dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# --- the promises ---------------------------------------------------------------------------
def _security_problems(name: str, pod: Dict[str, Any]) -> List[str]:
    out = []
    pod_ctx = pod.get("securityContext", {})
    for container in pod.get("initContainers", []) + pod["containers"]:
        where = f"{name}/{container['name']}"
        ctx = container.get("securityContext", {})
        if not (ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True):
            out.append(f"{where}: securityContext.runAsNonRoot must be true")
        if (ctx.get("runAsUser", pod_ctx.get("runAsUser")) or 0) == 0:
            out.append(f"{where}: runAsUser must be a non-zero uid (runAsNonRoot cannot check a named user)")
        if ctx.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
        if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
            out.append(f"{where}: securityContext.capabilities.drop must be [ALL]")
        if ctx.get("privileged"):
            out.append(f"{where}: privileged")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp != "RuntimeDefault":
            out.append(f"{where}: seccompProfile.type must be RuntimeDefault, got {seccomp}")
        if ctx.get("readOnlyRootFilesystem") is not True:
            out.append(f"{where}: securityContext.readOnlyRootFilesystem must be true")
        resources = container.get("resources", {})
        for key in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(key, {})):
                out.append(f"{where}: resources.{key} needs cpu and memory")
    return out


def _image_problems(overlay: str, name: str, pod: Dict[str, Any]) -> List[str]:
    out = []
    for container in pod["containers"]:
        image = container.get("image") or ""
        short = image.split("@")[0].split(":")[0]
        if not image or "REPLACE_ME" in image or "PROJECT" in image:
            out.append(f"{name}/{container['name']}: image is unset ({image!r})")
        elif overlay.startswith("gke") and "@sha256:" not in image:
            out.append(f"{name}/{container['name']}: image {image} is not pinned by digest: CD sets it with "
                       f"`kustomize edit set image {short.split('/')[-1] if 'breastdx' in short else short}="
                       f"REGISTRY/IMAGE@sha256:…` in deploy/k8s/overlays/{overlay}")
    return out


def _network_problems(objects) -> List[str]:
    out = []
    policies = of_kind(objects, "NetworkPolicy")
    deny = [p for p in policies.values() if p["spec"].get("podSelector") == {}
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    if not deny:
        out.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    serving = [p for p in policies.values()
               if p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "serving"]
    if not serving:
        return out + ["no NetworkPolicy selects the model server"]
    spec = serving[0]["spec"]
    sources = [peer for rule in spec.get("ingress", []) for peer in rule.get("from", [])]
    if not sources or any(peer.get("podSelector", {}).get("matchLabels") != {"app.kubernetes.io/name": "webapp"}
                          or "namespaceSelector" in peer or "ipBlock" in peer for peer in sources):
        out.append(f"the model server must admit only the web app's pods, admits {sources}")
    if "Egress" not in spec.get("policyTypes", []):
        out.append("the model server's NetworkPolicy does not restrict egress")
    for rule in spec.get("egress", []):
        for peer in rule.get("to", [{}]):
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            if "ipBlock" in peer:
                block = peer["ipBlock"]
                if block["cidr"] == "0.0.0.0/0" and not {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= \
                        set(block.get("except", [])):
                    out.append("the model server may reach private (cluster) addresses")
            elif labels != {"k8s-app": "kube-dns"}:
                out.append(f"the model server may reach pods in the cluster: {peer}")
    return out


def _pdb_problems(objects) -> List[str]:
    out = []
    pdbs = list(of_kind(objects, "PodDisruptionBudget").values())
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    for name, deployment in of_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in pdbs if p["spec"]["selector"].get("matchLabels", {}).items() <= labels.items()]
        if not mine:
            out.append(f"no PodDisruptionBudget for deployment {name}")
            continue
        spec = mine[0]["spec"]
        low = hpas[name]["spec"]["minReplicas"] if name in hpas else deployment["spec"].get("replicas", 1)
        if "minAvailable" in spec and int(spec["minAvailable"]) >= low:
            out.append(f"PodDisruptionBudget {mine[0]['metadata']['name']}: minAvailable {spec['minAvailable']} "
                       f"with {low} replica(s) blocks every node drain")
    return out


def _tls_iap_problems(objects) -> List[str]:
    out = []
    certs = of_kind(objects, "ManagedCertificate")
    ingress = of_kind(objects, "Ingress").get("webapp", {})
    annotations = ingress.get("metadata", {}).get("annotations", {})
    cert_name = annotations.get("networking.gke.io/managed-certificates")
    if cert_name not in certs:
        out.append("the Ingress names no ManagedCertificate (networking.gke.io/managed-certificates)")
    else:
        domains = certs[cert_name]["spec"].get("domains") or []
        if not domains or not all(DOMAIN_FORM.match(d or "") for d in domains):
            out.append(f"certificate domain is missing or not a DNS name ({domains}): "
                       f"set DOMAIN in {SETTINGS_FILE} (vars.BREASTDX_DOMAIN in CD)")
    if annotations.get("kubernetes.io/ingress.allow-http") != "false":
        out.append("the Ingress also serves plain HTTP: kubernetes.io/ingress.allow-http must be \"false\"")
    if ingress.get("spec", {}).get("ingressClassName") != "gce":
        out.append("the Ingress is not a GCE ingress (IAP and managed certificates need it)")
    backend = ingress.get("spec", {}).get("rules", [{}])[0].get("http", {}).get("paths", [{}])[0] \
        .get("backend", {}).get("service", {}).get("name")
    service = of_kind(objects, "Service").get(backend, {})
    ref = service.get("metadata", {}).get("annotations", {}).get("cloud.google.com/backend-config", "")
    configs = of_kind(objects, "BackendConfig")
    names = re.findall(r'"default"\s*:\s*"([^"]+)"', ref)
    if not names or names[0] not in configs:
        out.append(f"Service {backend} has no BackendConfig (cloud.google.com/backend-config)")
    else:
        spec = configs[names[0]]["spec"]
        if not spec.get("iap", {}).get("enabled") or not spec["iap"].get("oauthclientCredentials", {}).get(
                "secretName"):
            out.append(f"BackendConfig {names[0]}: IAP is not enabled with an OAuth client Secret")
        if spec.get("healthCheck", {}).get("requestPath") != "/healthz":
            out.append(f"BackendConfig {names[0]}: the health check must ask /healthz (the app answers 401 "
                       "elsewhere without IAP's header)")
    accounts = of_kind(objects, "ServiceAccount")
    email = accounts.get("serving", {}).get("metadata", {}).get("annotations", {}).get(
        "iam.gke.io/gcp-service-account", "")
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-]+\.iam\.gserviceaccount\.com", email or ""):
        out.append(f"the serving Workload Identity account is unset ({email!r}): "
                   f"set SERVING_SERVICE_ACCOUNT in {SETTINGS_FILE}")
    config = next((c["data"]["models.config"] for c in of_kind(objects, "ConfigMap").values()
                   if "models.config" in c.get("data", {})), "")
    if "gs://BUCKET/" in config or not re.search(r'base_path:\s*"gs://[^"]+/serving/', config):
        out.append("models.config base_path is not the pipeline's GCS serving root: replace gs://BUCKET/breastdx "
                   "in deploy/k8s/overlays/gke/models.config with BREASTDX_GCS_ROOT")
    policy = of_kind(objects, "NetworkPolicy").get("webapp", {})
    sources = {peer.get("ipBlock", {}).get("cidr") for rule in policy.get("spec", {}).get("ingress", [])
               for peer in rule.get("from", [{}])}
    if sources != GOOGLE_LB_RANGES:
        out.append(f"the web app should admit only Google's load balancers {sorted(GOOGLE_LB_RANGES)}, "
                   f"admits {sorted(map(str, sources))}")
    return out


def _auth_problems(overlay: str, objects) -> List[str]:
    env = env_of(of_kind(objects, "Deployment")["webapp"])
    mode = env.get("BREASTDX_WEB_AUTH") or "local"
    out = []
    if overlay.startswith("gke") and mode != "iap":
        out.append(f"the web app on GKE must verify IAP (BREASTDX_WEB_AUTH=iap), has {mode}")
    if mode == "iap" and not IAP_AUDIENCE_FORM.match(env.get("BREASTDX_WEB_IAP_AUDIENCE") or ""):
        out.append(f"BREASTDX_WEB_AUTH=iap without a valid audience "
                   f"({env.get('BREASTDX_WEB_IAP_AUDIENCE')!r}): set IAP_AUDIENCE in {SETTINGS_FILE} "
                   "(/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID)")
    return out


def problems(overlay: str, objects) -> List[str]:
    """Every broken promise of a rendered overlay, one line each naming what to set."""
    out = []
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        out += _security_problems(name, pod) + _image_problems(overlay, name, pod)
    out += _network_problems(objects) + _pdb_problems(objects) + _auth_problems(overlay, objects)
    if overlay.startswith("gke"):
        out += _tls_iap_problems(objects)
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
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {bogus: 1, ports: [{port: 80}]}\n")
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
    for setting in ("set DOMAIN", "set IAP_AUDIENCE", "set SERVING_SERVICE_ACCOUNT", "gs://BUCKET/breastdx",
                    "kustomize edit set image breastdx-webapp=", "kustomize edit set image tensorflow/serving="):
        assert setting in text, f"{overlay}: nothing says {setting!r}:\n{text}"


@pytest.mark.parametrize("change, expected", [
    ({"images": {"tensorflow/serving": IMAGES["tensorflow/serving"]}},
     "webapp/webapp: image breastdx-webapp:latest is not pinned by digest"),
    ({"settings": dict(SETTINGS, DOMAIN="")}, f"set DOMAIN in {SETTINGS_FILE}"),
    ({"settings": dict(SETTINGS, IAP_AUDIENCE="")}, "BREASTDX_WEB_AUTH=iap without a valid audience"),
    ({"settings": dict(SETTINGS, SERVING_SERVICE_ACCOUNT="")}, "set SERVING_SERVICE_ACCOUNT"),
    ({"bucket_root": None}, "replace gs://BUCKET/breastdx"),
])
def test_a_setting_left_out_is_named(tmp_path, change, expected):
    root = fill(tmp_path, **change)
    found = problems("gke", render(os.path.join(root, "overlays", "gke")))
    assert len(found) == 1 and expected in found[0], found


def test_the_checks_catch_a_root_container_and_an_open_model_server(filled):
    objects = yaml.safe_load_all(open(filled["gke"][0]).read())
    objects = [o for o in objects if o]
    serving = of_kind(objects, "Deployment")["serving"]["spec"]["template"]["spec"]
    serving["securityContext"].pop("runAsNonRoot")
    serving["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    of_kind(objects, "NetworkPolicy")["serving"]["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
    found = "\n".join(problems("gke", objects))
    assert "serving/tensorflow-serving: securityContext.runAsNonRoot must be true" in found
    assert "readOnlyRootFilesystem" in found and "admit only the web app" in found


def test_serving_probes_ask_for_the_configured_model(filled):
    for overlay in OVERLAYS:
        objects = filled[overlay][1]
        config = next(c for c in of_kind(objects, "ConfigMap").values() if "models.config" in c.get("data", {}))
        model_name = re.search(r'name:\s*"([^"]+)"', config["data"]["models.config"]).group(1)
        container = of_kind(objects, "Deployment")["serving"]["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == f"/v1/models/{model_name}"
            assert ports.get(get["port"], get["port"]) == 8501
        assert "--model_config_file=/config/models.config" in container["args"]
        assert of_kind(objects, "HorizontalPodAutoscaler")["serving"]["spec"]["scaleTargetRef"]["name"] == "serving"
        env = env_of(of_kind(objects, "Deployment")["webapp"])
        assert env["BREASTDX_WEB_SERVER_URL"] == "http://serving:8501" and env["BREASTDX_WEB_MODEL_NAME"] == model_name
        backend = of_kind(objects, "Ingress")["webapp"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
        assert backend["service"]["name"] in of_kind(objects, "Service")


def test_serving_is_cpu_by_default_and_gpu_serving_keeps_off_the_trainers_pool(filled):
    cpu = of_kind(filled["gke"][1], "Deployment")["serving"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"] and "nodeSelector" not in cpu
    gpu = of_kind(filled["gke-gpu"][1], "Deployment")["serving"]["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["containers"][0]["image"] == GPU_IMAGES["tensorflow/serving"]  # the -gpu digest, not the CPU one
    assert gpu["nodeSelector"] == {"cloud.google.com/gke-nodepool": SERVING_GPU_POOL} != \
        {"cloud.google.com/gke-nodepool": TRAINER_POOL}
    assert {"key": "breastdx.io/pool", "operator": "Equal", "value": SERVING_GPU_POOL,
            "effect": "NoSchedule"} in gpu["tolerations"]
    hpa = of_kind(filled["gke-gpu"][1], "HorizontalPodAutoscaler")["serving"]["spec"]
    assert hpa["maxReplicas"] <= 2  # one GPU each on a pool of at most two nodes
    # the docs create the pools these names refer to: the Trainer's, and serving's with its taint
    with open(os.path.join(PROJECT_DIR, "docs", "cluster.md")) as f:
        docs = f.read()
    assert re.search(rf"node-pools create {TRAINER_POOL} ", docs)
    assert re.search(rf"node-pools create {SERVING_GPU_POOL} .*?--node-taints breastdx\.io/pool={SERVING_GPU_POOL}:"
                     r"NoSchedule", docs, re.S)


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
