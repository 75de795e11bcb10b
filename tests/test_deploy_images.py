"""deploy/*.Dockerfile: every image builds from what its ignore file lets into the context.

No Docker engine runs here, so the build context is computed the way the Docker client
computes it: docker-py's ``docker.utils.build.exclude_paths`` (a port of moby's
fileutils) over the repository with the image's ``<Dockerfile>.dockerignore`` (BuildKit
reads that file beside the Dockerfile before ``.dockerignore``). The Dockerfile is read
by ``dockerfile`` (the official BuildKit parser). Each COPY/ADD source must be in the
context, or ``docker build`` fails with "not found" -- the web image did, before its
ignore file re-included ``components/``. The web image must also carry every project
module the web app imports (found by importing it in a fresh interpreter).
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from typing import Any

import dockerfile
import pytest
from docker.utils.build import exclude_paths
from tools_venv import PROJECT_DIR

DEPLOY = os.path.join(PROJECT_DIR, "deploy")
IMAGES = ("pipeline.Dockerfile", "webapp.Dockerfile")
NOT_IN_IMAGES = ("__pycache__", ".pyc")  # ignored by both files; never needed at run time


def ignore_patterns(path: str) -> list[str]:
    """The ignore file's patterns as the Docker client reads them (docker-py's APIClient.build)."""
    with open(path) as f:
        return [
            line.strip()
            for line in f.read().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]


def build_context(dockerfile_name: str, root: str = PROJECT_DIR) -> set[str]:
    """Relative paths (files and folders) that `docker build -f deploy/<name> .` sends."""
    patterns = ignore_patterns(os.path.join(DEPLOY, dockerfile_name + ".dockerignore"))
    return exclude_paths(root, patterns, dockerfile=f"deploy/{dockerfile_name}")


def instructions(dockerfile_name: str) -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(os.path.join(DEPLOY, dockerfile_name)))


def copy_sources(dockerfile_name: str) -> list[str]:
    """COPY/ADD sources taken from the build context (not ``--from`` another stage)."""
    sources = []
    for command in instructions(dockerfile_name):
        if command.cmd.upper() in ("COPY", "ADD") and not any(
            f.startswith("--from") for f in command.flags
        ):
            sources.extend(command.value[:-1])
    return sources


def missing_sources(dockerfile_name: str, context: set[str]) -> list[str]:
    """Sources the build would not find: globs with no match, folders with no file."""
    missing = []
    for source in copy_sources(dockerfile_name):
        pattern = source.rstrip("/")
        hits = [p for p in context if fnmatch.fnmatchcase(p, pattern)]
        files = [
            p
            for p in context
            if os.path.isfile(os.path.join(PROJECT_DIR, p))
            and any(p == h or p.startswith(h + "/") for h in hits)
        ]
        if not files:
            missing.append(source)
    return missing


def image_files(dockerfile_name: str) -> set[str]:
    """Repository files that end up in the image: COPY sources that are in the context."""
    context = build_context(dockerfile_name)
    out = set()
    for source in copy_sources(dockerfile_name):
        pattern = source.rstrip("/")
        for path in context:
            if fnmatch.fnmatchcase(path, pattern) or any(
                path.startswith(h + "/") for h in context if fnmatch.fnmatchcase(h, pattern)
            ):
                if os.path.isfile(os.path.join(PROJECT_DIR, path)):
                    out.add(path)
    return out


@pytest.fixture(scope="module")
def contexts() -> dict[str, set[str]]:
    return {name: build_context(name) for name in IMAGES}


@pytest.mark.parametrize("name", IMAGES)
def test_every_copy_source_is_in_the_build_context(contexts, name):
    missing = missing_sources(name, contexts[name])
    assert not missing, (
        f"deploy/{name}: COPY/ADD sources excluded by deploy/{name}.dockerignore: "
        f"{missing}; re-include them there with '!<path>'"
    )


@pytest.mark.parametrize("name", IMAGES)
def test_context_holds_no_venv_data_or_outputs(contexts, name):
    heavy = sorted(
        p
        for p in contexts[name]
        if p.split("/")[0] in (".venv", ".venv-tools", "workdir", "build", ".git", "tests", "bench")
    )
    assert not heavy, heavy[:5]
    assert not [p for p in contexts[name] if p.endswith(NOT_IN_IMAGES)]


def test_the_check_catches_an_ignore_file_that_drops_a_source(tmp_path):
    """An ignore file that leaves the ground floor out (no `breastdx_core/`): the COPY of
    breastdx_core/ is reported missing, and is not once the folder is let in."""
    os.makedirs(tmp_path / "deploy")
    for rel in ("webapp.Dockerfile",):
        (tmp_path / "deploy" / rel).write_text(open(os.path.join(DEPLOY, rel)).read())
    for rel in ("breastdx_core/__init__.py", "breastdx_core/contract.py", "webapp/__init__.py"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        (tmp_path / rel).write_text("")
    before = ["**", "!deploy/webapp-requirements.txt", "!webapp/"]
    context = exclude_paths(str(tmp_path), before, dockerfile="deploy/webapp.Dockerfile")
    assert "webapp/__init__.py" in context and "breastdx_core/__init__.py" not in context
    assert "breastdx_core/" in missing_sources("webapp.Dockerfile", context)
    context = exclude_paths(
        str(tmp_path), before + ["!breastdx_core/"], dockerfile="deploy/webapp.Dockerfile"
    )
    assert "breastdx_core/" not in missing_sources("webapp.Dockerfile", context)


def test_pipeline_image_installs_the_stack_before_the_code():
    steps = instructions("pipeline.Dockerfile")
    copies = [(i, c.value[:-1]) for i, c in enumerate(steps) if c.cmd.upper() == "COPY"]
    installs = [
        i for i, c in enumerate(steps) if c.cmd.upper() == "RUN" and "pip install" in c.value[0]
    ]
    first_code = min(
        i for i, sources in copies if any(s.startswith(("pipeline", "components")) for s in sources)
    )
    stack = [i for i in installs if i < first_code]
    assert stack, "the pinned stack must be installed before the code is copied (layer cache)"
    before_stack = {s for i, sources in copies if i < stack[0] for s in sources}
    assert before_stack <= {"constraints.txt", "pyproject.toml", "README.md"}, before_stack
    assert "-c constraints.txt" in steps[stack[0]].value[0]


@pytest.mark.parametrize("name", IMAGES)
def test_images_run_as_a_non_root_user(name):
    users = [c.value[0] for c in instructions(name) if c.cmd.upper() == "USER"]
    assert users, f"deploy/{name} has no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    # Kubernetes' runAsNonRoot can only verify a numeric user
    assert user.isdigit(), (
        f"deploy/{name}: USER {user} should be numeric (runAsNonRoot checks the uid)"
    )


def test_pipeline_image_project_dir():
    from breastdx_core import cluster_configs

    workdirs = [
        c.value[0] for c in instructions("pipeline.Dockerfile") if c.cmd.upper() == "WORKDIR"
    ]
    assert workdirs[-1] == cluster_configs.ClusterConfig().image_project_dir == "/opt/breastdx"


def test_web_image_carries_every_module_the_web_app_imports():
    """Imports the web app (and builds it) in a fresh interpreter; every project file it
    loaded must be copied into the web image, and nothing of TensorFlow may load."""
    code = (
        "import json, sys, webapp, webapp.auth, webapp.audit\n"
        "webapp.create_app({'SECRET_KEY': 'x', 'PREDICTION_CLIENT': object()})\n"
        f"root = {PROJECT_DIR!r}\n"
        "files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None) and "
        "m.__file__.startswith(root + '/')})\n"
        "print(json.dumps({'files': files, 'tf': 'tensorflow' in sys.modules}))\n"
    )
    env = dict(
        os.environ,
        BREASTDX_WEB_AUTH="iap",
        BREASTDX_WEB_IAP_AUDIENCE="/projects/1/global/backendServices/2",
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert not facts["tf"]
    loaded = {os.path.relpath(f, PROJECT_DIR) for f in facts["files"]}
    loaded = {
        f for f in loaded if not f.startswith(".")
    }  # the venvs' site-packages: pip installs those
    missing = sorted(loaded - image_files("webapp.Dockerfile"))
    assert not missing, (
        f"the web app imports files the web image lacks: {missing} (deploy/webapp.Dockerfile)"
    )


def test_web_image_requirements_cover_sign_in():
    with open(os.path.join(DEPLOY, "webapp-requirements.txt")) as f:
        names = {
            line.split("#")[0].strip().split("<")[0].split(">")[0].split("=")[0].lower()
            for line in f
        }
    assert {"google-auth", "cryptography", "flask", "gunicorn"} <= names


# --- the pipeline image under KFP 2's launcher ----------------------------------------------
# Where KFP 2's launcher (backend/src/v2/component/launcher_v2.go, run inside the step's own
# container as its user) writes: LocalPathForURI stages gs://, minio:// and s3:// artifacts
# under /gcs/, /minio/, /s3/ (MkdirAll of each output's parent, every input blob downloaded
# there); output parameters under /tmp/kfp/outputs/ (driver.go) and the executor output at
# /tmp/kfp_outputs/. KFP mounts emptyDirs on the three roots and on /.local, /.cache,
# /.config from 2.3.0 (argocompiler/container.go, kubeflow/pipelines#10857); before that the
# image's own folders are all there is.
LAUNCHER_ROOTS = ("/gcs", "/minio", "/s3")
LAUNCHER_SCRATCH = ("/.local", "/.cache", "/.config")


def file_system_facts(steps: list[dockerfile.Command]) -> dict[str, Any]:
    """Replays the RUN lines' mkdir/chown/chmod/useradd (the only commands that decide who
    may write where) and returns {"paths": {path: (uid, gid, mode)}, "users": {name: uid},
    "user": the final USER}. Paths the base image already has are unknown (absent)."""
    import shlex

    paths: dict[str, tuple] = {}
    users: dict[str, int] = {"root": 0}
    user = "0"
    for step in steps:
        if step.cmd.upper() == "USER":
            user = step.value[0].split(":")[0]
        if step.cmd.upper() != "RUN":
            continue
        for command in step.value[0].split("&&"):
            words = shlex.split(command)
            if not words:
                continue
            name, args = words[0], [w for w in words[1:] if not w.startswith("-")]
            if name == "mkdir":
                for path in args:
                    paths.setdefault(path.rstrip("/") or "/", (0, 0, 0o755))
            elif name == "useradd":
                users[words[-1]] = int(words[words.index("--uid") + 1])
            elif name == "chown":
                owner, _, group = args[0].partition(":")
                uid = int(owner) if owner.isdigit() else users[owner]
                for path in (p for p in args[1:] if p in paths):  # else: a base-image path
                    _, gid, mode = paths[path]
                    paths[path] = (uid, int(group or gid), mode)
            elif name == "chmod":
                for path in args[1:]:
                    uid, gid, _ = paths.get(path, (0, 0, 0o755))
                    if path in paths or path == "/tmp":
                        paths[path] = (uid, gid, int(args[0], 8))
    return {"paths": paths, "users": users, "user": user}


def writable_by(facts: dict[str, Any], path: str, uid: int, gid: int = 0) -> bool:
    if path not in facts["paths"]:
        return False
    owner, group, mode = facts["paths"][path]
    return bool(owner == uid and mode & 0o200 or group == gid and mode & 0o020 or mode & 0o002)


def launcher_problems(steps: list[dockerfile.Command]) -> list[str]:
    facts = file_system_facts(steps)
    user = facts["user"]
    uid = int(user) if user.isdigit() else facts["users"].get(user, 0)
    out = []
    for path in LAUNCHER_ROOTS + LAUNCHER_SCRATCH:
        if path not in facts["paths"]:
            out.append(f"{path} is not created")
        elif facts["paths"][path][0] != uid:
            owner = facts["paths"][path][0]
            out.append(f"{path} is owned by uid {owner}, not the runtime uid {uid}")
        elif not writable_by(facts, path, uid):
            out.append(f"{path} is not writable by uid {uid}")
        elif not writable_by(facts, path, 12345678, gid=0):  # OpenShift: any uid, group 0
            out.append(f"{path} is not group-0 writable")
    if facts["paths"].get("/tmp", (0, 0, 0))[2] != 0o1777:
        out.append("/tmp is not 1777 (the launcher writes /tmp/kfp/outputs and /tmp/kfp_outputs)")
    return out


def test_pipeline_image_lets_the_runtime_uid_write_every_launcher_mount():
    steps = instructions("pipeline.Dockerfile")
    assert launcher_problems(steps) == []
    user = [c.value[0] for c in steps if c.cmd.upper() == "USER"][-1]
    assert user == "10001"


def test_launcher_check_catches_a_root_owned_mount(tmp_path):
    """The same Dockerfile without the chown (what KFP 2.0-2.2 then meets: root-owned
    folders, permission denied on every task), and without /s3: both reported."""
    with open(os.path.join(DEPLOY, "pipeline.Dockerfile")) as f:
        text = f.read()
    assert "chown 10001:0 /gcs /minio /s3" in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        text.replace("chown 10001:0 /gcs /minio /s3", "chown 10001:0 /minio").replace(
            "mkdir -p /gcs /minio /s3", "mkdir -p /gcs /minio"
        )
    )
    found = launcher_problems(list(dockerfile.parse_file(str(broken))))
    assert "/gcs is owned by uid 0, not the runtime uid 10001" in found
    assert "/s3 is not created" in found
