"""Checks a rendered kustomize overlay (`kubectl kustomize deploy/k8s/overlays/<name>`)
against what the deployment promises, one line per broken promise naming what to set.

Called by tests/test_deploy_manifests.py (every overlay, filled in as CD fills it, and the
committed ones, which must name each open setting) and by .github/workflows/cd.yml before
`kubectl apply` (a setting left unset stops the deploy with its name):

    python3 deploy/k8s/check_rendered.py rendered.yaml gke      # exit 1 and the lines, or 0
    python3 deploy/k8s/check_rendered.py launcher.yaml kfp      # deploy/kfp (KFP's settings)

Promises: requests and limits and a locked-down securityContext on every container (non-root
uid, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, read-only
root file system); images set, pinned by digest on GKE; a default-deny NetworkPolicy, the
model server reached only by the web app and reaching nothing in the cluster; a
PodDisruptionBudget per Deployment that still lets a node drain; sign-in settings complete;
on GKE a GCE Ingress with a managed certificate for a real domain, HTTPS only, IAP on the
web app's backend with the /healthz health check, Workload Identity for serving, the
bucket in models.config, the web app reached only from Google's load balancers.
Needs PyYAML only.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

IAP_AUDIENCE_FORM = re.compile(r"^/projects/\d+/global/backendServices/\d+$")
DOMAIN_FORM = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
GOOGLE_LB_RANGES = {"130.211.0.0/22", "35.191.0.0/16"}
SETTINGS_FILE = "deploy/k8s/overlays/gke/settings.env"
KFP_LAUNCHER_FILE = "deploy/kfp/kfp-launcher.yaml"
KSERVE_FILE = "deploy/k8s/components/kserve/inferenceservice.yaml"
GCS_ROOT_FORM = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/\S*)?")


def of_kind(objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_of(deployment) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# --- the promises ---------------------------------------------------------------------------
def _security_problems(name: str, pod: dict[str, Any]) -> list[str]:
    out = []
    pod_ctx = pod.get("securityContext", {})
    for container in pod.get("initContainers", []) + pod["containers"]:
        where = f"{name}/{container['name']}"
        ctx = container.get("securityContext", {})
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            out.append(f"{where}: securityContext.runAsNonRoot must be true")
        if (ctx.get("runAsUser", pod_ctx.get("runAsUser")) or 0) == 0:
            out.append(
                f"{where}: runAsUser must be a non-zero uid (runAsNonRoot cannot check a named user)"
            )
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


def _image_problems(overlay: str, name: str, pod: dict[str, Any]) -> list[str]:
    out = []
    for container in pod["containers"]:
        image = container.get("image") or ""
        short = image.split("@")[0].split(":")[0]
        if not image or "REPLACE_ME" in image or "PROJECT" in image:
            out.append(f"{name}/{container['name']}: image is unset ({image!r})")
        elif overlay.startswith("gke") and "@sha256:" not in image:
            out.append(
                f"{name}/{container['name']}: image {image} is not pinned by digest: CD sets it with "
                f"`kustomize edit set image {short.split('/')[-1] if 'breastdx' in short else short}="
                f"REGISTRY/IMAGE@sha256:…` in deploy/k8s/overlays/{overlay}"
            )
    return out


def _network_problems(objects) -> list[str]:
    out = []
    policies = of_kind(objects, "NetworkPolicy")
    deny = [
        p
        for p in policies.values()
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        out.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    serving = [
        p
        for p in policies.values()
        if p["spec"].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "serving"
    ]
    if not serving:
        return out + ["no NetworkPolicy selects the model server"]
    spec = serving[0]["spec"]
    sources = [peer for rule in spec.get("ingress", []) for peer in rule.get("from", [])]
    if not sources or any(
        peer.get("podSelector", {}).get("matchLabels") != {"app.kubernetes.io/name": "webapp"}
        or "namespaceSelector" in peer
        or "ipBlock" in peer
        for peer in sources
    ):
        out.append(f"the model server must admit only the web app's pods, admits {sources}")
    if "Egress" not in spec.get("policyTypes", []):
        out.append("the model server's NetworkPolicy does not restrict egress")
    for rule in spec.get("egress", []):
        for peer in rule.get("to", [{}]):
            labels = peer.get("podSelector", {}).get("matchLabels", {})
            if "ipBlock" in peer:
                block = peer["ipBlock"]
                if block["cidr"] == "0.0.0.0/0" and not {
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                } <= set(block.get("except", [])):
                    out.append("the model server may reach private (cluster) addresses")
            elif labels != {"k8s-app": "kube-dns"}:
                out.append(f"the model server may reach pods in the cluster: {peer}")
    return out


def _pdb_problems(objects) -> list[str]:
    out = []
    pdbs = list(of_kind(objects, "PodDisruptionBudget").values())
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    for name, deployment in of_kind(objects, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [
            p
            for p in pdbs
            if p["spec"]["selector"].get("matchLabels", {}).items() <= labels.items()
        ]
        if not mine:
            out.append(f"no PodDisruptionBudget for deployment {name}")
            continue
        spec = mine[0]["spec"]
        low = (
            hpas[name]["spec"]["minReplicas"]
            if name in hpas
            else deployment["spec"].get("replicas", 1)
        )
        if "minAvailable" in spec and int(spec["minAvailable"]) >= low:
            out.append(
                f"PodDisruptionBudget {mine[0]['metadata']['name']}: minAvailable {spec['minAvailable']} "
                f"with {low} replica(s) blocks every node drain"
            )
    return out


def _tls_iap_problems(objects) -> list[str]:
    out = []
    certs = of_kind(objects, "ManagedCertificate")
    ingress = of_kind(objects, "Ingress").get("webapp", {})
    annotations = ingress.get("metadata", {}).get("annotations", {})
    cert_name = annotations.get("networking.gke.io/managed-certificates")
    if cert_name not in certs:
        out.append(
            "the Ingress names no ManagedCertificate (networking.gke.io/managed-certificates)"
        )
    else:
        domains = certs[cert_name]["spec"].get("domains") or []
        if not domains or not all(DOMAIN_FORM.match(d or "") for d in domains):
            out.append(
                f"certificate domain is missing or not a DNS name ({domains}): "
                f"set DOMAIN in {SETTINGS_FILE} (vars.BREASTDX_DOMAIN in CD)"
            )
    if annotations.get("kubernetes.io/ingress.allow-http") != "false":
        out.append(
            'the Ingress also serves plain HTTP: kubernetes.io/ingress.allow-http must be "false"'
        )
    if ingress.get("spec", {}).get("ingressClassName") != "gce":
        out.append("the Ingress is not a GCE ingress (IAP and managed certificates need it)")
    backend = (
        ingress.get("spec", {})
        .get("rules", [{}])[0]
        .get("http", {})
        .get("paths", [{}])[0]
        .get("backend", {})
        .get("service", {})
        .get("name")
    )
    service = of_kind(objects, "Service").get(backend, {})
    ref = (
        service.get("metadata", {})
        .get("annotations", {})
        .get("cloud.google.com/backend-config", "")
    )
    configs = of_kind(objects, "BackendConfig")
    names = re.findall(r'"default"\s*:\s*"([^"]+)"', ref)
    if not names or names[0] not in configs:
        out.append(f"Service {backend} has no BackendConfig (cloud.google.com/backend-config)")
    else:
        spec = configs[names[0]]["spec"]
        if not spec.get("iap", {}).get("enabled") or not spec["iap"].get(
            "oauthclientCredentials", {}
        ).get("secretName"):
            out.append(f"BackendConfig {names[0]}: IAP is not enabled with an OAuth client Secret")
        if spec.get("healthCheck", {}).get("requestPath") != "/healthz":
            out.append(
                f"BackendConfig {names[0]}: the health check must ask /healthz (the app answers 401 "
                "elsewhere without IAP's header)"
            )
    accounts = of_kind(objects, "ServiceAccount")
    email = (
        accounts.get("serving", {})
        .get("metadata", {})
        .get("annotations", {})
        .get("iam.gke.io/gcp-service-account", "")
    )
    if not re.fullmatch(
        r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-]+\.iam\.gserviceaccount\.com", email or ""
    ):
        out.append(
            f"the serving Workload Identity account is unset ({email!r}): "
            f"set SERVING_SERVICE_ACCOUNT in {SETTINGS_FILE}"
        )
    config = next(
        (
            c["data"]["models.config"]
            for c in of_kind(objects, "ConfigMap").values()
            if "models.config" in c.get("data", {})
        ),
        "",
    )
    served_by_kserve = bool(of_kind(objects, "InferenceService")) and "serving" not in of_kind(
        objects, "Deployment"
    )
    if not served_by_kserve and (
        "gs://BUCKET/" in config or not re.search(r'base_path:\s*"gs://[^"]+/serving/', config)
    ):
        out.append(
            "models.config base_path is not the pipeline's GCS serving root: replace gs://BUCKET/breastdx "
            "in deploy/k8s/overlays/gke/models.config with BREASTDX_GCS_ROOT"
        )
    policy = of_kind(objects, "NetworkPolicy").get("webapp", {})
    sources = {
        peer.get("ipBlock", {}).get("cidr")
        for rule in policy.get("spec", {}).get("ingress", [])
        for peer in rule.get("from", [{}])
    }
    if sources != GOOGLE_LB_RANGES:
        out.append(
            f"the web app should admit only Google's load balancers {sorted(GOOGLE_LB_RANGES)}, "
            f"admits {sorted(map(str, sources))}"
        )
    return out


def _auth_problems(overlay: str, objects) -> list[str]:
    env = env_of(of_kind(objects, "Deployment")["webapp"])
    mode = env.get("BREASTDX_WEB_AUTH") or "local"
    out = []
    if overlay.startswith("gke") and mode != "iap":
        out.append(f"the web app on GKE must verify IAP (BREASTDX_WEB_AUTH=iap), has {mode}")
    if mode == "iap" and not IAP_AUDIENCE_FORM.match(env.get("BREASTDX_WEB_IAP_AUDIENCE") or ""):
        out.append(
            f"BREASTDX_WEB_AUTH=iap without a valid audience "
            f"({env.get('BREASTDX_WEB_IAP_AUDIENCE')!r}): set IAP_AUDIENCE in {SETTINGS_FILE} "
            "(/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID)"
        )
    return out


def kfp_launcher_problems(objects) -> list[str]:
    """deploy/kfp: the `kfp-launcher` ConfigMap gives KFP's driver a pipeline root that TFX
    can write (gs://: TFX here has no minio:// or s3:// file system) in a real bucket."""
    config = of_kind(objects, "ConfigMap").get("kfp-launcher")
    if config is None:
        return [
            "no kfp-launcher ConfigMap (KFP's driver would use minio://mlpipeline/v2/artifacts)"
        ]
    root = (config.get("data") or {}).get("defaultPipelineRoot", "")
    if not GCS_ROOT_FORM.fullmatch(root) or root.startswith("gs://BUCKET/"):
        return [
            f"kfp-launcher defaultPipelineRoot {root!r} is not a gs:// root TFX can write: "
            f"replace gs://BUCKET/breastdx in {KFP_LAUNCHER_FILE} with BREASTDX_GCS_ROOT"
        ]
    return []


def _kserve_problems(overlay: str, objects) -> list[str]:
    """The InferenceService (overlay gke-kserve): the same locked-down pod as the serving
    Deployment, KServe's TensorFlow Serving runtime on the pipeline's GCS serving root,
    RawDeployment (so the NetworkPolicies apply), and the web app calling its predictor."""
    out = []
    for name, isvc in of_kind(objects, "InferenceService").items():
        where = f"InferenceService {name}"
        predictor = isvc["spec"]["predictor"]
        model = predictor.get("model") or predictor.get("tensorflow") or {}
        legacy = "tensorflow" if "tensorflow" in predictor else ""
        fmt = (model.get("modelFormat") or {}).get("name", legacy)
        if fmt != "tensorflow":
            out.append(
                f"{where}: the predictor must be KServe's TensorFlow Serving runtime "
                f"(modelFormat tensorflow), has {fmt!r}"
            )
        pod = dict(predictor, containers=[dict(model, name="kserve-container")])
        out += _security_problems(where, pod)
        uri = model.get("storageUri", "")
        served = rf"gs://[^/]+/.+/serving/{re.escape(name)}/?"
        if "gs://BUCKET/" in uri or not re.fullmatch(served, uri):
            out.append(
                f"{where}: storageUri {uri!r} is not the pipeline's GCS serving root "
                f"<BREASTDX_GCS_ROOT>/serving/{name}: replace gs://BUCKET/breastdx in "
                f"{KSERVE_FILE}"
            )
        annotations = isvc["metadata"].get("annotations", {})
        if annotations.get("serving.kserve.io/deploymentMode") != "RawDeployment":
            out.append(
                f"{where}: serving.kserve.io/deploymentMode must be RawDeployment "
                "(Serverless routes around the namespace's NetworkPolicies)"
            )
        if predictor.get("labels", {}).get("app.kubernetes.io/name") != "serving":
            out.append(
                f"{where}: spec.predictor.labels needs app.kubernetes.io/name: serving "
                "(the NetworkPolicies and PodDisruptionBudget select it)"
            )
        if overlay.startswith("gke") and predictor.get("serviceAccountName") != "serving":
            out.append(f"{where}: serviceAccountName must be serving (Workload Identity)")
        if "webapp" in of_kind(objects, "Deployment"):
            url = env_of(of_kind(objects, "Deployment")["webapp"]).get("BREASTDX_WEB_SERVER_URL")
            if url != f"http://{name}-predictor":
                out.append(
                    f"the web app calls {url}, not the InferenceService's predictor "
                    f"http://{name}-predictor"
                )
    return out


def problems(overlay: str, objects) -> list[str]:
    """Every broken promise of a rendered overlay, one line each naming what to set."""
    if overlay == "kfp":
        return kfp_launcher_problems(objects)
    out = _kserve_problems(overlay, objects)
    for name, deployment in of_kind(objects, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        out += _security_problems(name, pod) + _image_problems(overlay, name, pod)
    out += _network_problems(objects) + _pdb_problems(objects) + _auth_problems(overlay, objects)
    if overlay.startswith("gke"):
        out += _tls_iap_problems(objects)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_rendered.py RENDERED.yaml OVERLAY", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        objects = [doc for doc in yaml.safe_load_all(f) if doc]
    found = problems(argv[1], objects)
    for line in found:
        print(f"{argv[0]}: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
