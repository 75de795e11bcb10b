""".github/workflows and cloudbuild.yaml: valid (check-jsonschema's vendored schemas),
tests on every push, and on a push to main that touches anything the images hold:
tests -> images (pushed, digests passed on) -> pipeline update + run -> on a blessed push,
serving and the web app rolled to the new digests. The CD's helper scripts
(deploy/ci/*.sh) run here against a stand-in `gcloud`.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import subprocess

import yaml
from test_deploy_images import copy_sources
from tools_venv import PROJECT_DIR, run

WORKFLOWS = os.path.join(PROJECT_DIR, ".github", "workflows")
CI_SCRIPTS = os.path.join(PROJECT_DIR, "deploy", "ci")


def _load(name):
    with open(os.path.join(WORKFLOWS, name)) as f:
        doc = yaml.safe_load(f)
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _steps(job):
    return job["steps"]


def _runs(job) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflows_match_the_schema():
    files = sorted(glob.glob(os.path.join(WORKFLOWS, "*.yml")))
    assert len(files) >= 2
    result = run("check-jsonschema", ["--builtin-schema", "vendor.github-workflows", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_can_fail(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    steps: []\n")  # no runs-on
    assert (
        run(
            "check-jsonschema", ["--builtin-schema", "vendor.github-workflows", str(bad)]
        ).returncode
        != 0
    )


def test_tests_run_on_every_push():
    ci = _load("ci.yml")
    assert "push" in ci["on"] and not (ci["on"]["push"] or {}).get("branches")
    assert any(step.get("run") == "make test" for step in ci["jobs"]["test"]["steps"])


def _filtered(path: str, filters) -> bool:
    # GitHub's filter globs: ** crosses folders; fnmatch's * does too, which is enough here
    return any(fnmatch.fnmatchcase(path, f) or fnmatch.fnmatchcase(path + "/x", f) for f in filters)


def test_path_filters_cover_everything_the_images_hold():
    push = _load("cd.yml")["on"]["push"]
    assert push["branches"] == ["main"]
    sources = {
        s.rstrip("/")
        for name in ("pipeline.Dockerfile", "webapp.Dockerfile")
        for s in copy_sources(name)
    }
    sources |= {
        "deploy/pipeline.Dockerfile",
        "deploy/webapp.Dockerfile",
        "deploy/webapp.Dockerfile.dockerignore",
        "deploy/k8s/base/serving.yaml",
        "cloudbuild.yaml",
        ".github/workflows/cd.yml",
    }
    missing = sorted(s for s in sources if not _filtered(s, push["paths"]))
    assert not missing, f"a change to these would not trigger CD: {missing}"
    assert not _filtered("docs/cluster.md", push["paths"]) and not _filtered(
        "tests/test_x.py", push["paths"]
    )


def test_cd_builds_trains_and_rolls_on_a_blessed_push():
    cd = _load("cd.yml")
    jobs = cd["jobs"]
    assert jobs["images"]["needs"] == "test" and jobs["train"]["needs"] == "images"
    assert set(jobs["deploy"]["needs"]) == {"images", "train"}
    assert jobs["deploy"]["if"] == "needs.train.outputs.blessed == 'true'"
    # images: both Dockerfiles built and pushed; their digests are the job's outputs
    builds = {
        s["with"]["file"]: s
        for s in _steps(jobs["images"])
        if "build-push-action" in s.get("uses", "")
    }
    assert set(builds) == {"deploy/pipeline.Dockerfile", "deploy/webapp.Dockerfile"}
    assert all(
        b["with"]["push"] is True and os.path.exists(os.path.join(PROJECT_DIR, f))
        for f, b in builds.items()
    )
    outputs = jobs["images"]["outputs"]
    for name, step in (
        ("pipeline", builds["deploy/pipeline.Dockerfile"]),
        ("webapp", builds["deploy/webapp.Dockerfile"]),
    ):
        assert outputs[name].endswith(f"@${{{{ steps.{step['id']}.outputs.digest }}}}"), outputs[
            name
        ]
    # train: the compiled pipeline runs the pipeline image by digest; update, run, blessed?
    assert jobs["train"]["env"]["BREASTDX_IMAGE"] == "${{ needs.images.outputs.pipeline }}"
    train = _runs(jobs["train"])
    assert "breastdx pipeline update" in train and "breastdx run create" in train
    assert 'deploy/ci/wait_run.sh "$run_id"' in train  # `breastdx run wait` with back-off
    assert "deploy/ci/newest_version.sh" in train and "blessed=true" in train
    # deploy: the new digests into the overlay, applied, both rollouts awaited
    deploy = _runs(jobs["deploy"])
    assert "kustomize edit set image" in deploy
    assert '"breastdx-webapp=${{ needs.images.outputs.webapp }}"' in deploy
    assert '"tensorflow/serving=${{ needs.images.outputs.serving }}"' in deploy
    assert "kubectl apply" in deploy
    assert deploy.index("deploy/k8s/check_rendered.py rendered.yaml") < deploy.index(
        "kubectl apply"
    )
    assert "rollout status deploy/serving" in deploy and "rollout status deploy/webapp" in deploy
    assert "BREASTDX_KFP_ENDPOINT" in cd["env"] and "secrets." in cd["env"]["BREASTDX_KFP_ENDPOINT"]


def test_cd_fills_every_setting_the_gke_overlay_leaves_open():
    with open(os.path.join(PROJECT_DIR, "deploy", "k8s", "overlays", "gke", "settings.env")) as f:
        keys = {line.split("=")[0] for line in f if re.match(r"^[A-Z_]+=", line)}
    deploy = _runs(_load("cd.yml")["jobs"]["deploy"])
    written = set(re.findall(r"([A-Z_]+)=%s", deploy))
    assert written == keys, (written, keys)
    with open(os.path.join(PROJECT_DIR, "deploy", "k8s", "overlays", "gke", "models.config")) as f:
        placeholder = re.search(r"s#([^#]+)#", deploy).group(1)
        assert placeholder in f.read()


def _stand_in_gcloud(tmp_path, script: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text("#!/usr/bin/env bash\n" + script)
    gcloud.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


def test_newest_version_reads_the_serving_root(tmp_path):
    env = _stand_in_gcloud(
        tmp_path,
        'echo "$@" > "$(dirname "$0")/args"\n'
        'printf "%s/\\n" gs://b/serving/m/1 gs://b/serving/m/12 gs://b/serving/m/3 '
        "gs://b/serving/m/tmp\n",
    )
    script = os.path.join(CI_SCRIPTS, "newest_version.sh")
    out = subprocess.run(
        [script, "gs://b/serving/m"], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0 and out.stdout.strip() == "12"
    assert (tmp_path / "bin" / "args").read_text().split() == ["storage", "ls", "gs://b/serving/m/"]
    (tmp_path / "none").mkdir()
    empty = _stand_in_gcloud(
        tmp_path / "none", "exit 1\n"
    )  # `gcloud storage ls` of a missing folder
    out = subprocess.run(
        [script, "gs://b/serving/m"], capture_output=True, text=True, env=empty, timeout=30
    )
    assert out.returncode == 0 and out.stdout.strip() == ""  # no model yet


def test_kfp_sign_in_mints_an_id_token_for_the_iap_client(tmp_path):
    env = _stand_in_gcloud(tmp_path, 'echo "$@" > "$(dirname "$0")/args"; echo id-token-for-iap\n')
    env.update(
        KFP_AUTH="iap",
        KFP_IAP_CLIENT_ID="123-abc.apps.googleusercontent.com",
        CI_SERVICE_ACCOUNT="breastdx-ci@p.iam.gserviceaccount.com",
    )
    script = (
        f"source {os.path.join(CI_SCRIPTS, 'kfp_sign_in.sh')} && kfp_sign_in && "
        'echo "$BREASTDX_KFP_AUTH $BREASTDX_KFP_TOKEN"'
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "token id-token-for-iap"
    args = (tmp_path / "bin" / "args").read_text().split()
    assert args[:3] == [
        "auth",
        "print-identity-token",
        "--impersonate-service-account=breastdx-ci@p.iam.gserviceaccount.com",
    ]
    assert "--audiences=123-abc.apps.googleusercontent.com" in args


def test_cloudbuild_builds_both_images_with_their_ignore_files():
    path = os.path.join(PROJECT_DIR, "cloudbuild.yaml")
    result = run("check-jsonschema", ["--builtin-schema", "vendor.cloudbuild", path])
    assert result.returncode == 0, result.stdout + result.stderr
    with open(path) as f:
        doc = yaml.safe_load(f)
    built = {}
    for step in doc["steps"]:
        args = step["args"]
        assert "DOCKER_BUILDKIT=1" in step.get(
            "env", []
        )  # BuildKit reads <Dockerfile>.dockerignore
        built[args[args.index("-f") + 1]] = args[args.index("-t") + 1]
    assert set(built) == {"deploy/pipeline.Dockerfile", "deploy/webapp.Dockerfile"}
    assert sorted(doc["images"]) == sorted(built.values())
    assert all(
        tag.startswith("${_REGISTRY}/") and tag.endswith(":${_TAG}") for tag in built.values()
    )
