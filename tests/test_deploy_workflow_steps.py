""".github/workflows/*.yml run here, step by step, on a copy of the checked-out tree.

Every `run:` step of every job is executed with bash as GitHub runs it (`bash -eo
pipefail`), with the env the workflow, the job and the step set (`${{ … }}` filled from
the test's vars, secrets and the outputs of earlier steps and jobs), in its
working-directory. What needs the cloud is answered by stand-ins on PATH that record each
call: gcloud, docker, kubectl (apply / rollout / get), pip's download, and the
`breastdx pipeline|run` verbs (the KFP API); `kustomize` runs for real through
`kubectl kustomize` (build) and the same edits `kustomize edit` makes. A call that is on
no list below fails the test, and so does a step that is neither run nor listed in
NOT_RUN with its reason.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import stat
import subprocess
import sys
from typing import Any

import pytest
import yaml
from tools_venv import PROJECT_DIR, tool

WORKFLOWS = os.path.join(PROJECT_DIR, ".github", "workflows")

# Steps not executed here, and why (file, job, step name or its `run:`).
NOT_RUN = {
    ("ci.yml", "test", "Tests"): "make test: the suite this test belongs to",
    ("cd.yml", "test", "make test"): "make test: the suite this test belongs to",
    ("cd.yml", "train", "Install"): "make venv: builds the venv this test runs in",
}
# Actions (`uses:`): none runs here; each listed with what stands for it.
ACTIONS = {
    "actions/checkout": "the copy of the tree under test",
    "actions/setup-python": "the project's venv",
    "actions/cache": "nothing to cache",
    "google-github-actions/auth": "cloud: Workload Identity Federation",
    "google-github-actions/setup-gcloud": "cloud: the gcloud stand-in",
    "google-github-actions/get-gke-credentials": "cloud: the kubectl stand-in",
    "docker/setup-buildx-action": "cloud: Docker",
    "docker/build-push-action": "cloud: Docker build and push (digests come from NEEDS)",
}
# Calls that reach the cloud, answered by stand-ins: (command, regex of its arguments).
CLOUD_CALLS = [
    ("gcloud", r"auth configure-docker \S+ --quiet"),
    (
        "gcloud",
        r"auth print-identity-token --impersonate-service-account=\S+ --audiences=\S+"
        r" --include-email",
    ),
    ("gcloud", r"storage ls gs://\S+/"),
    ("docker", r"buildx imagetools inspect tensorflow/serving:[\w.-]+ --format .*"),
    ("kubectl", r"apply -f rendered\.yaml"),
    ("kubectl", r"-n breastdx rollout status deploy/\w+ --timeout=\w+"),
    (
        "kubectl",
        r"-n breastdx wait --for=condition=Ready inferenceservice/breastdx-idc --timeout=\w+",
    ),
    ("kubectl", r"-n breastdx get deploy -o jsonpath=.*"),
    ("pip", r"install --quiet pyyaml"),
    ("breastdx", r"pipeline update"),
    ("breastdx", r"run create"),
    ("breastdx", r"run wait r-123 --timeout \d+"),
]

BUCKET_ROOT = "gs://example-bucket/breastdx"
DIGEST = "sha256:" + "ab" * 32
VARS = {
    "REGISTRY": "europe-west4-docker.pkg.dev/example-project/breastdx",
    "BREASTDX_GCS_ROOT": BUCKET_ROOT,
    "BREASTDX_KFP_AUTH": "iap",
    "BREASTDX_KFP_IAP_CLIENT_ID": "123-abc.apps.googleusercontent.com",
    "BREASTDX_DOMAIN": "breastdx.example.org",
    "BREASTDX_IAP_AUDIENCE": "/projects/123456789012/global/backendServices/4567890123456789",
    "BREASTDX_SERVING_SERVICE_ACCOUNT": "breastdx-serving@example-project.iam.gserviceaccount.com",
    "GKE_CLUSTER": "breastdx",
    "GKE_LOCATION": "europe-west4-a",
}
SECRETS = {
    "BREASTDX_KFP_ENDPOINT": "https://kfp.example.org",
    "GCP_SERVICE_ACCOUNT": "breastdx-ci@example-project.iam.gserviceaccount.com",
    "GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/locations/global/workloadIdentityPools/gh/"
    "providers/gh",
}
NEEDS = {
    "images": {
        "pipeline": f"{VARS['REGISTRY']}/breastdx-pipeline@{DIGEST}",
        "webapp": f"{VARS['REGISTRY']}/breastdx-webapp@{DIGEST}",
        "serving": f"tensorflow/serving@{DIGEST}",
        "serving_gpu": f"tensorflow/serving@{DIGEST}",
    },
    "train": {"blessed": "true", "model_version": "2"},
    "test": {},
}

STAND_IN = """#!/usr/bin/env bash
echo "{name} $*" >> "$CALLS"
{body}
"""
STAND_INS = {
    "gcloud": """case "$1 $2" in
  "storage ls") n=$(cat "$STATE/ls" 2>/dev/null || echo 0); echo $((n + 1)) > "$STATE/ls"
    echo "$3"1/; [ "$n" -ge 1 ] && echo "$3"2/; exit 0 ;;
  "auth print-identity-token") echo id-token ;;
esac""",
    "docker": 'echo "sha256:$(printf %s "$4" | sha256sum | cut -c1-64)"',
    "kubectl": """if [ "$1" = kustomize ]; then exec "$REAL_KUBECTL" "$@"; fi
[ "$1 $2" = "apply -f" ] && cp "$3" "$STATE/applied.yaml"; exit 0""",
    # the runner's python3: pip's download is the cloud; everything else the project's venv
    "python3": """sed -i '$d' "$CALLS"
if [ "$1 $2 $3" = "-m pip install" ]; then shift 2; echo "pip $*" >> "$CALLS"; exit 0; fi
exec "$REAL_PYTHON" "$@\"""",
    # kustomize build = kubectl kustomize; `edit` changes the kustomization as kustomize does
    "kustomize": """if [ "$1" = build ]; then
  sed -i '$d' "$CALLS"; exec "$REAL_KUBECTL" kustomize "$2"
fi
sed -i '$d' "$CALLS"; exec "$REAL_PYTHON" "$EDIT_KUSTOMIZATION" "$@\"""",
    # the KFP API: create answers a run id, the first wait times out, the second succeeds
    "breastdx": """case "$1 $2" in
  "pipeline update") exit 0 ;;
  "run create") echo "run r-123" ;;
  "run wait") n=$(cat "$STATE/wait" 2>/dev/null || echo 0); echo $((n + 1)) > "$STATE/wait"
    if [ "$n" -eq 0 ]; then
      echo "error: run r-123 did not finish within $5 s (it goes on)" >&2; exit 2
    fi
    echo "run r-123 state=SUCCEEDED" ;;
  *) exit 64 ;;
esac""",
}
EDIT_KUSTOMIZATION = '''"""What `kustomize edit set image NAME=REF@DIGEST…` and
`kustomize edit add annotation --force K:V` write."""
import sys, yaml
args = [a for a in sys.argv[1:] if a != "--force"]
with open("kustomization.yaml") as f:
    doc = yaml.safe_load(f)
if args[:3] == ["edit", "set", "image"]:
    entries = {e["name"]: e for e in doc.get("images", [])}
    for item in args[3:]:
        name, ref = item.split("=", 1)
        new_name, digest = ref.split("@")
        entries[name] = {"name": name, "newName": new_name, "digest": digest}
    doc["images"] = list(entries.values())
elif args[:3] == ["edit", "add", "annotation"]:
    for item in args[3:]:
        key, value = item.split(":", 1)
        doc.setdefault("commonAnnotations", {})[key] = value
else:
    sys.exit("unsupported kustomize call: " + " ".join(sys.argv[1:]))
with open("kustomization.yaml", "w") as f:
    yaml.safe_dump(doc, f, sort_keys=False)
'''


def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def step_key(name: str, job: str, step: dict[str, Any]):
    return (name, job, step.get("name") or step.get("run", "").strip())


def expression(text: str, context: dict[str, Any]) -> str:
    """Fills ``${{ a.b.c }}`` and ``${{ a.b || 'default' }}`` from ``context``."""

    def value(expr: str) -> str:
        for alternative in (a.strip() for a in expr.split("||")):
            if alternative.startswith("'"):
                return alternative.strip("'")
            node: Any = context
            for part in alternative.split("."):
                if not isinstance(node, dict):
                    raise AssertionError(f"cannot evaluate ${{{{ {expr} }}}}")
                node = node.get(part, "")
            if node:
                return str(node)
        return ""

    return re.sub(r"\$\{\{\s*(.+?)\s*\}\}", lambda m: value(m.group(1)), text)


def checkout(tmp_path) -> str:
    """The tree as the runner checks it out: deploy/ and .github/ copied (steps edit
    them), the rest linked; .venv/bin/python the project's, .venv/bin/breastdx a stand-in."""
    root = tmp_path / "checkout"
    root.mkdir()
    for entry in os.listdir(PROJECT_DIR):
        if entry in (".venv", ".git") or entry.startswith(".venv"):
            continue
        source = os.path.join(PROJECT_DIR, entry)
        if entry in ("deploy", ".github"):
            shutil.copytree(source, root / entry)
        else:
            os.symlink(source, root / entry)
    os.makedirs(root / ".venv" / "bin")
    python = root / ".venv" / "bin" / "python"
    python.write_text(f'#!/usr/bin/env bash\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return str(root)


def stand_ins(tmp_path, checkout_dir: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STAND_INS.items():
        path = (
            bin_dir / name
            if name != "breastdx"
            else os.path.join(checkout_dir, ".venv", "bin", "breastdx")
        )
        with open(path, "w") as f:
            f.write(STAND_IN.format(name=name, body=body))
        os.chmod(path, 0o755)
    edit = tmp_path / "edit_kustomization.py"
    edit.write_text(EDIT_KUSTOMIZATION)
    (tmp_path / "state").mkdir()
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls"),
        "STATE": str(tmp_path / "state"),
        "REAL_KUBECTL": tool("kubectl"),
        "REAL_PYTHON": sys.executable,
        "EDIT_KUSTOMIZATION": str(edit),
        "PYTHONPATH": checkout_dir,
        "HOME": str(tmp_path),
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def run_job(
    tmp_path,
    workflow: str,
    job_name: str,
    variables: dict[str, str] = VARS,
    directory: str = WORKFLOWS,
) -> dict[str, Any]:
    """Runs every step of one job; returns {"outputs": {step id: {k: v}}, "calls": [...],
    "ran": [step keys], "listed": [...], "checkout": dir, "state": the stand-ins' folder}."""
    doc = load(os.path.join(directory, workflow))
    job = doc["jobs"][job_name]
    root = checkout(tmp_path)
    base_env = stand_ins(tmp_path, root)
    outputs: dict[str, dict[str, str]] = {}
    ran, listed = [], []
    for step in job["steps"]:
        key = step_key(workflow, job_name, step)
        if "uses" in step:
            action = step["uses"].split("@")[0]
            assert action in ACTIONS, (
                f"{key}: action {action} is neither run here nor listed in ACTIONS"
            )
            listed.append(key)
            continue
        if key in NOT_RUN:
            listed.append(key)
            continue
        context = {
            "vars": variables,
            "secrets": SECRETS,
            "needs": {k: {"outputs": v} for k, v in NEEDS.items()},
            "github": {"sha": "0" * 40},
            "steps": {k: {"outputs": v} for k, v in outputs.items()},
        }
        env = dict(os.environ)
        for scope in (doc.get("env", {}), job.get("env", {}), step.get("env", {})):
            env.update({k: expression(str(v), context) for k, v in scope.items()})
        github_output = tmp_path / f"output-{len(ran)}"
        github_output.write_text("")
        env.update(base_env, GITHUB_OUTPUT=str(github_output))
        script = tmp_path / f"step-{len(ran)}.sh"
        script.write_text(expression(step["run"], context))
        cwd = os.path.join(root, step.get("working-directory", "."))
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (
            f"{key} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
        if "id" in step:
            outputs[step["id"]] = dict(
                line.split("=", 1) for line in github_output.read_text().splitlines() if "=" in line
            )
        ran.append(key)
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    unlisted = unlisted_calls(calls, CLOUD_CALLS)
    assert not unlisted, f"{workflow}/{job_name}: calls on no list (CLOUD_CALLS): {unlisted}"
    return {
        "outputs": outputs,
        "calls": calls,
        "ran": ran,
        "listed": listed,
        "checkout": root,
        "state": tmp_path / "state",
    }


def unlisted_calls(calls: list[str], listed) -> list[str]:
    """The recorded calls that match no (command, argument regex) of ``listed``."""
    return [
        c
        for c in calls
        if not any(
            c.split(" ", 1)[0] == name and re.fullmatch(args, c.split(" ", 1)[1])
            for name, args in listed
        )
    ]


JOBS = [
    (os.path.basename(path), job)
    for path in sorted(glob.glob(os.path.join(WORKFLOWS, "*.yml")))
    for job in load(path)["jobs"]
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Runs each (workflow, job[, overlay]) once for the module: {key: run_job's result}."""
    cache: dict[Any, dict[str, Any]] = {}

    def get(workflow: str, job: str, overlay: str = "") -> dict[str, Any]:
        if (workflow, job, overlay) not in cache:
            variables = dict(VARS, BREASTDX_DEPLOY_OVERLAY=overlay) if overlay else VARS
            tmp = tmp_path_factory.mktemp(f"{job}{overlay}")
            cache[workflow, job, overlay] = run_job(tmp, workflow, job, variables)
        return cache[workflow, job, overlay]

    return get


@pytest.mark.parametrize("workflow, job", JOBS)
def test_every_step_runs_or_is_listed(ran, workflow, job):
    found = ran(workflow, job)
    steps = load(os.path.join(WORKFLOWS, workflow))["jobs"][job]["steps"]
    assert len(found["ran"]) + len(found["listed"]) == len(steps)


def test_train_job_names_the_model_and_finds_the_blessed_push(ran):
    """The `python -c` names the served model (breastdx_core, the project's settings), the
    wait outlasts one `run wait` timeout, and a new version under the serving root is seen."""
    found = ran("cd.yml", "train")
    assert found["outputs"]["before"] == {"model": "breastdx-idc", "version": "1"}
    assert found["outputs"]["pushed"] == {"version": "2", "blessed": "true"}
    waits = [c for c in found["calls"] if c.startswith("breastdx run wait")]
    assert len(waits) == 2
    sign_ins = [c for c in found["calls"] if "print-identity-token" in c]
    assert len(sign_ins) == 3  # once for update + create, once before each wait
    assert f"gcloud storage ls {BUCKET_ROOT}/serving/breastdx-idc/" in found["calls"]


def test_images_job_inspects_the_serving_tag_the_kustomization_names(ran):
    found = ran("cd.yml", "images")
    with open(os.path.join(PROJECT_DIR, "deploy", "k8s", "base", "kustomization.yaml")) as f:
        tag = next(
            i["newTag"] for i in yaml.safe_load(f)["images"] if i["name"] == "tensorflow/serving"
        )
    inspected = [
        c.split()[4] for c in found["calls"] if c.startswith("docker buildx imagetools inspect")
    ]
    assert inspected == [f"tensorflow/serving:{tag}", f"tensorflow/serving:{tag}-gpu"]
    assert found["outputs"]["serving"]["serving"].startswith("tensorflow/serving@sha256:")


def test_deploy_job_renders_checks_and_applies_the_filled_overlay(ran):
    found = ran("cd.yml", "deploy")
    applied = [d for d in yaml.safe_load_all((found["state"] / "applied.yaml").read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in applied if d["kind"] == "Deployment"}
    webapp = deployments["webapp"]["spec"]["template"]
    assert webapp["spec"]["containers"][0]["image"] == NEEDS["images"]["webapp"]
    assert webapp["metadata"]["annotations"]["breastdx.io/model-version"] == "2"
    config = next(
        d for d in applied if d["kind"] == "ConfigMap" and "models.config" in d.get("data", {})
    )
    assert f'"{BUCKET_ROOT}/serving/breastdx-idc"' in config["data"]["models.config"]
    assert "kubectl apply -f rendered.yaml" in found["calls"]


def test_deploy_job_rolls_the_kserve_overlay(ran):
    """BREASTDX_DEPLOY_OVERLAY=gke-kserve: the InferenceService on the filled bucket, its
    predictor restarted for the new model version, awaited instead of the Deployment."""
    found = ran("cd.yml", "deploy", "gke-kserve")
    applied = [d for d in yaml.safe_load_all((found["state"] / "applied.yaml").read_text()) if d]
    isvc = next(d for d in applied if d["kind"] == "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"{BUCKET_ROOT}/serving/breastdx-idc"
    assert isvc["spec"]["predictor"]["annotations"]["breastdx.io/model-version"] == "2"
    assert not [
        d for d in applied if d["kind"] == "Deployment" and d["metadata"]["name"] == "serving"
    ]
    waits = [c for c in found["calls"] if " wait " in c or " rollout " in c]
    assert waits == [
        "kubectl -n breastdx wait --for=condition=Ready inferenceservice/breastdx-idc"
        " --timeout=15m",
        "kubectl -n breastdx rollout status deploy/webapp --timeout=10m",
    ]


def test_a_call_on_no_list_is_caught(ran, tmp_path):
    """Were kubectl not listed, the deploy job's kubectl calls would be caught (run_job
    fails on any); a kubectl call no entry allows is caught."""
    calls = ran("cd.yml", "deploy")["calls"]
    without_kubectl = [c for c in CLOUD_CALLS if c[0] != "kubectl"]
    assert unlisted_calls(calls, without_kubectl) == [c for c in calls if c.startswith("kubectl")]
    assert unlisted_calls(["kubectl delete ns breastdx"], CLOUD_CALLS) == [
        "kubectl delete ns breastdx"
    ]


@pytest.mark.parametrize(
    "step, needle",
    [
        ("uses: someone/deploy-everything@v1", "neither run here nor listed in ACTIONS"),
        ("run: python3 -c 'import sys; sys.exit(3)'", "failed"),
    ],
)
def test_an_unlisted_action_or_a_failing_step_fails(tmp_path, step, needle):
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "x.yml").write_text(
        f"on: push\njobs:\n  j:\n    runs-on: ubuntu-22.04\n    steps:\n      - {step}\n"
    )
    with pytest.raises(AssertionError, match=needle):
        run_job(tmp_path, "x.yml", "j", directory=str(tmp_path / "wf"))


# --- deploy/ci/wait_run.sh: the train job's wait ------------------------------------------
WAIT = os.path.join(PROJECT_DIR, "deploy", "ci", "wait_run.sh")


def _wait(tmp_path, answers: list[str], auth: str = "none") -> subprocess.CompletedProcess:
    """Runs wait_run.sh with a `breastdx` stand-in answering ``answers`` in turn ("rc|stderr")
    and a `sleep` stand-in that records the pauses instead of sleeping."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lines = "\n".join(
        f'  {i}) echo "{a.split("|", 1)[1]}" >&2; exit {a.split("|", 1)[0]} ;;'
        for i, a in enumerate(answers)
    )
    fake = bin_dir / "breastdx"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'n=$(cat "$STATE/n" 2>/dev/null || echo 0); echo $((n+1)) > "$STATE/n"\n'
        f'case "$n" in\n{lines}\n  *) exit 99 ;;\nesac\n'
    )
    (bin_dir / "sleep").write_text('#!/usr/bin/env bash\necho "$1" >> "$STATE/sleeps"\n')
    (bin_dir / "gcloud").write_text(
        '#!/usr/bin/env bash\necho "ERROR: (gcloud) permission denied" >&2; exit 1\n'
    )
    for path in bin_dir.iterdir():
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        STATE=str(tmp_path),
        KFP_AUTH=auth,
        BREASTDX_CLI=str(fake),
        KFP_IAP_CLIENT_ID="c.apps.googleusercontent.com",
        CI_SERVICE_ACCOUNT="a@b",
    )
    return subprocess.run(
        [WAIT, "r-1", "3600"], capture_output=True, text=True, env=env, timeout=60
    )


def _sleeps(tmp_path) -> list[int]:
    path = tmp_path / "sleeps"
    return [int(s) for s in path.read_text().split()] if path.exists() else []


def test_wait_waits_again_after_a_timeout_and_returns_the_runs_outcome(tmp_path):
    out = _wait(
        tmp_path, ["2|error: run r-1 did not finish within 3000 s", "1|run r-1 state=FAILED"]
    )
    assert out.returncode == 1 and _sleeps(tmp_path) == []


def test_wait_stops_at_once_on_a_refused_sign_in(tmp_path):
    refused = (
        "2|error: the Kubeflow Pipelines endpoint https://kfp refused the request (401): "
        "sign in with --auth iap"
    )
    out = _wait(tmp_path, [refused] * 5)
    assert out.returncode == 2 and _sleeps(tmp_path) == []
    assert (tmp_path / "n").read_text().strip() == "1"
    assert "refused CI's sign-in" in out.stderr.splitlines()[-2] + out.stderr.splitlines()[-1]


def test_wait_stops_when_the_token_cannot_be_minted(tmp_path):
    out = _wait(tmp_path, ["0|never asked"], auth="iap")
    assert out.returncode == 2 and not (tmp_path / "n").exists()
    assert "cannot sign in to Kubeflow Pipelines" in out.stderr


def test_wait_backs_off_on_an_unreachable_endpoint(tmp_path):
    unreachable = "2|error: cannot reach the Kubeflow Pipelines endpoint 'https://kfp' (timed out)"
    out = _wait(tmp_path, [unreachable] * 7 + ["0|run r-1 state=SUCCEEDED"])
    assert out.returncode == 0
    assert _sleeps(tmp_path) == [30, 60, 120, 240, 480, 600, 600]


def test_wait_with_the_real_verb_stops_on_a_refused_sign_in(tmp_path):
    """The real `breastdx run wait` against an endpoint that answers 401 (a sign-in that
    IAP or Kubeflow refuses): one request, no pause, the script's own line last."""
    import http.server
    import threading

    requests_seen = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests_seen.append(self.path)
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sleep").write_text('#!/usr/bin/env bash\necho "$1" >> "$STATE/sleeps"\n')
    (bin_dir / "sleep").chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        STATE=str(tmp_path),
        KFP_AUTH="none",
        BREASTDX_CLI=os.path.join(PROJECT_DIR, ".venv", "bin", "breastdx"),
        BREASTDX_KFP_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
        PYTHONPATH=PROJECT_DIR,
    )
    try:
        out = subprocess.run(
            [WAIT, "r-1", "3600"], capture_output=True, text=True, env=env, timeout=120
        )
    finally:
        server.shutdown()
    assert out.returncode == 2, out.stderr
    assert "refused the request (401)" in out.stderr
    assert "refused CI's sign-in" in out.stderr and "not retrying" in out.stderr
    assert len(requests_seen) == 1 and _sleeps(tmp_path) == []
