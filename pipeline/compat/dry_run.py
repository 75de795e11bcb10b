"""`breastdx pipeline dry-run`: runs a compiled pipeline package here, task by task.

Called by breastdx_cli/kfp.py (the verb) and tests/test_pipeline_e2e.py. It reads the
package `kubeflow_runner.py` wrote (KFP's YAML PipelineSpec or Vertex's JSON PipelineJob),
refuses what the named engine refuses, orders the tasks as the DAG says and runs each
container task's own command and arguments, the way the engine's driver and launcher
would:

- the executor input (``{{$}}``) is built as the open-source KFP 2 driver builds it
  (kubeflow/pipelines backend/src/v2/driver and metadata/client.go): parameter values from
  constants, pipeline parameters and producers' outputs; output artifacts typed from the
  component's output definitions, URIs ``<pipeline root>/<pipeline>/<run id>/<task>/<output>``;
  input artifacts as the driver reads them back from ML Metadata, named by id, with the
  producer's metadata and, on KFP, an *empty* instance schema (Vertex keeps the type);
- on Vertex the ExampleGen's ``pre_cache_check`` driver runs first (KFP runs no
  lifecycle hooks); each task's ``ExecutorOutput`` file is read back into its artifacts;
- the project's virtual environment stands in for the image: ``python`` is this
  interpreter, the image's project folder is this checkout, the TFX shim is installed
  in each task process as the image installs it (pipeline/compat/kfp_shim.py), and on KFP the
  task sees ``KFP_POD_NAME`` as under KFP's launcher;
- ``gs://`` paths (pipeline root, data, serving root) map to a local folder.

Not emulated: caching (every task runs), retries, resources (the GPU request is
ignored), ML Metadata (ids are counted here), Argo itself.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import yaml

from breastdx_core import errors
from pipeline.compat import kfp_launcher

# the checkout standing in for the image (this file is pipeline/compat/dry_run.py)
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
log = logging.getLogger(__name__)

ENGINES = ("kfp", "vertex")
# Executor kinds each engine's backend refuses, with its own words where it has them.
REFUSED = {
    "kfp": {
        "resolver": "resolver executors not implemented (KFP 2's argocompiler)",
        "customJob": "custom job executors are Vertex AI only",
    },
    "vertex": {},
}
# Roots TFX's file system here can write (TensorFlow's: no minio:// or s3:// scheme).
WRITABLE_ROOTS = {"kfp": ("gs://",), "vertex": ("gs://",)}
# KFP 2's driver, when neither the run nor the kfp-launcher ConfigMap names a root
# (backend/src/v2/config/env.go).
KFP_FALLBACK_ROOT = "minio://mlpipeline/v2/artifacts"
TREE_FINGERPRINT = "tree_fingerprint"


class DryRunError(errors.BreastdxError, RuntimeError):
    """The package cannot run on the named engine, or a task failed (one line)."""


class UnwritableRootError(DryRunError, errors.UserError):
    """A pipeline root TFX's file system cannot write."""


def check_pipeline_root(root: str, engine: str = "kfp") -> str:
    """Returns ``root`` if TFX can write it on ``engine``.

    Raises:
        UnwritableRootError: one line naming the fix (exit 2).
    """
    if root.startswith(WRITABLE_ROOTS[engine]):
        return root
    scheme = root.split("://", 1)[0] if "://" in root else ""
    why = (
        f"TFX's file system has no {scheme!r} scheme (\"File system scheme '{scheme}' not "
        'implemented")'
        if scheme
        else "it is not an object store URI"
    )
    raise UnwritableRootError(
        f"pipeline root {root or '(none)'!r} cannot be written by TFX on {engine}: {why}; give a "
        f"{' or '.join(WRITABLE_ROOTS[engine])} root (--pipeline-root, the package's "
        "defaultPipelineRoot or the kfp-launcher ConfigMap)"
    )


def load_package(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(PipelineSpec dict, runtime config dict) of a ``.yaml`` PipelineSpec or a
    ``.json`` PipelineJob."""
    if not os.path.isfile(path):
        raise DryRunError(
            f"no pipeline package at {path}: compile one with `breastdx pipeline compile`"
        )
    with open(path) as handle:
        # a KFP package may hold a second document, its platforms.kubernetes section
        # (kubeflow_runner.add_platform_spec): the PipelineSpec is the first
        document = (
            next(yaml.safe_load_all(handle), None)
            if path.endswith((".yaml", ".yml"))
            else json.load(handle)
        ) or {}
    if "pipelineSpec" in document:
        return document["pipelineSpec"], document.get("runtimeConfig", {})
    if "root" not in document or "deploymentSpec" not in document:
        raise DryRunError(
            f"{path} is neither a PipelineSpec nor a PipelineJob (no root/deploymentSpec)"
        )
    return document, {}


def refused_executors(spec: dict[str, Any], engine: str) -> list[str]:
    """``"<task>: <reason>"`` for every task whose executor ``engine`` refuses."""
    refused = REFUSED[engine]
    executors = spec["deploymentSpec"]["executors"]
    found = []
    for name, task in spec["root"]["dag"]["tasks"].items():
        label = spec["components"][task["componentRef"]["name"]].get("executorLabel")
        for kind in executors.get(label, {}):
            if kind in refused:
                found.append(f"{name}: {refused[kind]}")
    return found


def task_order(spec: dict[str, Any]) -> list[str]:
    """Tasks in an order that runs every producer before its consumers."""
    tasks = spec["root"]["dag"]["tasks"]
    needs = {}
    for name, task in tasks.items():
        deps = set(task.get("dependentTasks", []))
        for kind in ("parameters", "artifacts"):
            for value in task.get("inputs", {}).get(kind, {}).values():
                ref = value.get("taskOutputParameter") or value.get("taskOutputArtifact")
                if ref:
                    deps.add(ref["producerTask"])
        unknown = deps - set(tasks)
        if unknown:
            raise DryRunError(
                f"task {name} depends on {sorted(unknown)}, which is not a task of the DAG"
            )
        needs[name] = deps
    order: list[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and needs[n] <= set(order))
        if not ready:
            raise DryRunError(f"the DAG has a cycle among {sorted(set(tasks) - set(order))}")
        order.extend(ready)
    return order


class LocalStorage:
    """gs://BUCKET/path <-> <root>/BUCKET/path."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def local(self, uri: str) -> str:
        return os.path.join(self.root, uri[len("gs://") :]) if uri.startswith("gs://") else uri

    def rewrite(self, text: str) -> str:
        return text.replace("gs://", self.root.rstrip("/") + "/")

    def uri(self, path: str) -> str:
        """The gs:// URI of a local path under the root (other strings unchanged)."""
        prefix = self.root.rstrip("/") + "/"
        return "gs://" + path[len(prefix) :] if path.startswith(prefix) else path


class DryRun:
    """One run of a package (see the module docstring)."""

    def __init__(
        self,
        package: str,
        engine: str,
        storage_dir: str,
        pipeline_root: str | None = None,
        image_project_dir: str = "/opt/breastdx",
        project_dir: str | None = None,
        parameters: dict[str, Any] | None = None,
        python: str = sys.executable,
        launcher: bool = True,
        run_as: Any = "image",
        writable_mounts: tuple[str, ...] = kfp_launcher.LAUNCHER_MOUNTS,
        fill_tree_fingerprint: bool = True,
    ):
        if engine not in ENGINES:
            raise DryRunError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self.spec, runtime = load_package(package)
        self.storage = LocalStorage(storage_dir)
        self.project_dir = os.path.abspath(project_dir or PROJECT_DIR)
        self.image_project_dir = image_project_dir.rstrip("/")
        self.python = python
        # The driver's order: the run's root, the package's, the kfp-launcher ConfigMap's
        # (not modelled: pass it as the run's), then KFP's own fallback.
        self.pipeline_root = (
            pipeline_root
            or runtime.get("gcsOutputDirectory")
            or self.spec.get("defaultPipelineRoot")
            or (KFP_FALLBACK_ROOT if engine == "kfp" else "")
        )
        # On KFP: inputs downloaded as its launcher downloads them, through a store with GCS's
        # semantics, each task as the image's uid (when this process may switch to it).
        self.launcher = launcher and engine == "kfp"
        if run_as == "image":
            run_as = (kfp_launcher.IMAGE_UID, kfp_launcher.IMAGE_GID) if os.geteuid() == 0 else None
        self.run_as: tuple[int, int] | None = tuple(run_as) if run_as and self.launcher else None
        self.writable_mounts = tuple(writable_mounts)
        self.fill_tree_fingerprint = fill_tree_fingerprint
        self.store: kfp_launcher.ObjectStore | None = None
        self.parameters = dict(parameters or {})
        self.run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.outputs: dict[
            str, dict[str, Any]
        ] = {}  # task -> {"artifacts": {key: [RuntimeArtifact dict]}, "parameters": {}}
        self._next_id = 1
        self.pushed: str | None = None

    # --- checks before anything runs -------------------------------------------------
    def check(self) -> None:
        """Raises DryRunError naming the fix for what the engine would refuse."""
        refused = refused_executors(self.spec, self.engine)
        if refused:
            raise DryRunError(
                f"{self.engine} refuses {refused[0]}; recompile without it "
                f"({len(refused)} such task(s))"
            )
        check_pipeline_root(self.pipeline_root, self.engine)
        for label, executor in self.spec["deploymentSpec"]["executors"].items():
            container = executor.get("container")
            if container is not None and not container.get("image"):
                raise DryRunError(
                    f"executor {label} names no container image: compile with BREASTDX_IMAGE set"
                )
        text = json.dumps(self.spec)
        prefix = self.image_project_dir + "/"
        for piece in text.split(prefix)[1:]:
            relative = piece.split('"')[0].split("\\")[0]
            if relative and not os.path.exists(os.path.join(self.project_dir, relative)):
                raise DryRunError(
                    f"the package reads {self.image_project_dir}/{relative}, which this checkout "
                    f"(standing in for the image) does not hold: build it here as the image build "
                    f"does (.cache/pretrained: `breastdx weights`) or rebuild the image from here"
                )

    def check_parameters(self) -> None:
        """Stops the run as KFP's driver does when a root parameter has neither a value nor a
        default (the run's parameters are all the driver has; ``isOptional`` alone does not
        give a value)."""
        declared = self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        missing = sorted(
            p for p, d in declared.items() if p not in self.parameters and "defaultValue" not in d
        )
        if missing:
            raise DryRunError(
                f"KFP's driver would fail the run: parent DAG does not have input parameter "
                f"{missing[0]} (no value and no default for {', '.join(missing)}): pass "
                "--parameter NAME=VALUE, or recompile (kubeflow_runner writes defaults)"
            )

    # --- the executor input, as the engine's driver builds it ------------------------------
    def _parameter(self, task: str, name: str, value: dict[str, Any]) -> Any:
        if "runtimeValue" in value:
            constant = value["runtimeValue"]
            if "constant" in constant:
                return constant["constant"]
            inner = constant.get("constantValue", {})
            return inner.get("stringValue", inner.get("intValue", inner.get("doubleValue")))
        if "componentInputParameter" in value:
            key = value["componentInputParameter"]
            if key in self.parameters:
                return self.parameters[key]
            return self.spec["root"]["inputDefinitions"]["parameters"][key]["defaultValue"]
        if "taskOutputParameter" in value:
            ref = value["taskOutputParameter"]
            return self.outputs[ref["producerTask"]]["parameters"][ref["outputParameterKey"]]
        raise DryRunError(
            f"task {task}: parameter {name} has no value the dry run understands: {value}"
        )

    def _input_artifact(
        self, artifact: dict[str, Any], spec_type: dict[str, Any]
    ) -> dict[str, Any]:
        """A producer's output as the consumer's driver hands it on: KFP reads it back from
        ML Metadata with an empty instance schema; Vertex keeps the type."""
        result = {
            "name": artifact["name"],
            "uri": artifact["uri"],
            "metadata": dict(artifact.get("metadata", {})),
        }
        result["type"] = {"instanceSchema": ""} if self.engine == "kfp" else dict(spec_type)
        return result

    def executor_input(self, name: str, task_dir: str) -> dict[str, Any]:
        task = self.spec["root"]["dag"]["tasks"][name]
        component = self.spec["components"][task["componentRef"]["name"]]
        inputs: dict[str, Any] = {"parameterValues": {}, "artifacts": {}}
        for key, value in task.get("inputs", {}).get("parameters", {}).items():
            inputs["parameterValues"][key] = self._parameter(name, key, value)
        input_types = component.get("inputDefinitions", {}).get("artifacts", {})
        for key, value in task.get("inputs", {}).get("artifacts", {}).items():
            ref = value["taskOutputArtifact"]
            produced = self.outputs[ref["producerTask"]]["artifacts"][ref["outputArtifactKey"]]
            inputs["artifacts"][key] = {
                "artifacts": [
                    self._input_artifact(a, input_types.get(key, {}).get("artifactType", {}))
                    for a in produced
                ]
            }
        run_root = (
            f"{self.pipeline_root.rstrip('/')}/{self.spec['pipelineInfo']['name']}/{self.run_id}"
        )
        outputs: dict[str, Any] = {
            "artifacts": {},
            "parameters": {},
            "outputFile": os.path.join(task_dir, "output_metadata.json"),
        }
        for key, value in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs["artifacts"][key] = {
                "artifacts": [
                    {
                        "type": value["artifactType"],
                        "uri": f"{run_root}/{name}/{key}",
                        "metadata": {},
                    }
                ]
            }
        for key in component.get("outputDefinitions", {}).get("parameters", {}):
            outputs["parameters"][key] = {"outputFile": os.path.join(task_dir, "parameters", key)}
        return {"inputs": inputs, "outputs": outputs}

    # --- running ----------------------------------------------------------------------------
    def _environment(self, shim_dir: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [shim_dir, self.project_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        env.setdefault("TF_USE_LEGACY_KERAS", "1")  # as deploy/pipeline.Dockerfile sets it
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if self.engine == "kfp":
            env["KFP_POD_NAME"] = f"dry-run-{self.run_id}"
            env["KFP_POD_UID"] = uuid.uuid4().hex
        else:
            env.pop("KFP_POD_NAME", None)
        return env

    def _command(
        self, command: list[str], args: list[str], executor_input: dict[str, Any]
    ) -> list[str]:
        text = self.storage.rewrite(json.dumps(executor_input))
        full = [self.python if part == "python" else part for part in command] + [
            text if arg == "{{$}}" else arg for arg in args
        ]
        return [
            self.storage.rewrite(part).replace(self.image_project_dir + "/", self.project_dir + "/")
            for part in full
        ]

    def _exec(self, name: str, argv: list[str], env: dict[str, str], log_path: str) -> None:
        user = {}
        if self.run_as:  # the image's USER, with none of this process's groups
            user = {"preexec_fn": kfp_launcher.image_user(*self.run_as)}
        with open(log_path, "ab") as handle:
            result = subprocess.run(
                argv,
                cwd=self.project_dir,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
                **user,
            )
        if result.returncode:
            with open(log_path, errors="replace") as handle:
                tail = [line.rstrip() for line in handle.readlines()[-5:]]
            raise DryRunError(
                f"task {name} failed (exit {result.returncode}); log {log_path}: "
                f"{' | '.join(t for t in tail if t)[-600:]}"
            )

    def _record_outputs(self, name: str, executor_input: dict[str, Any]) -> None:
        out_file = self.storage.local(executor_input["outputs"]["outputFile"])
        executor_output: dict[str, Any] = {}
        if os.path.exists(out_file):
            with open(out_file) as handle:
                executor_output = json.load(handle)
        artifacts = {}
        for key, listed in executor_input["outputs"]["artifacts"].items():
            written = executor_output.get("artifacts", {}).get(key, {}).get("artifacts")
            result = []
            for i, artifact in enumerate(listed["artifacts"]):
                final = dict(artifact)
                if written and i < len(written):
                    final["metadata"] = written[i].get("metadata", {})
                    final["uri"] = self.storage.uri(written[i].get("uri") or artifact["uri"])
                final["name"] = str(self._next_id)  # KFP: the ML Metadata id
                self._next_id += 1
                final["metadata"].setdefault("display_name", key)
                result.append(final)
            artifacts[key] = result
        parameters = {}
        for key, value in executor_input["outputs"]["parameters"].items():
            path = self.storage.local(value["outputFile"])
            if os.path.exists(path):
                with open(path) as handle:
                    parameters[key] = handle.read()
        for key, value in executor_output.get("parameterValues", {}).items():
            parameters.setdefault(key, value)
        self.outputs[name] = {"artifacts": artifacts, "parameters": parameters}
        for artifact in artifacts.get("pushed_model", []):
            if artifact["metadata"].get("pushed"):
                self.pushed = self.storage.local(artifact["metadata"].get("pushed_destination", ""))

    def run(self, work_dir: str | None = None) -> dict[str, Any]:
        """Runs every task; returns {"tasks": [...], "pushed": path or None, "logs": dir}."""
        self.check()
        from pipeline.compat import kfp_shim

        work_dir = os.path.abspath(work_dir or tempfile.mkdtemp(prefix="breastdx-dry-run-"))
        shim_dir = os.path.join(work_dir, "image-site")
        os.makedirs(shim_dir, exist_ok=True)
        with open(os.path.join(shim_dir, "sitecustomize.py"), "w") as handle:
            if self.launcher:  # the image's shim, plus the store's semantics in each task
                handle.write(
                    "from pipeline.compat import kfp_launcher; kfp_launcher.install_in_task()\n"
                )
            else:
                handle.write(kfp_shim.pth_line())  # what the image's .pth file does
        env = self._environment(shim_dir)
        if self.launcher:
            self._prepare_pod_side(work_dir, env)
        tasks = self.spec["root"]["dag"]["tasks"]
        executors = self.spec["deploymentSpec"]["executors"]
        if self.fill_tree_fingerprint:
            self._fill_tree_fingerprint()
        self.check_parameters()
        done = []
        for name in task_order(self.spec):
            component = self.spec["components"][tasks[name]["componentRef"]["name"]]
            executor = executors[component["executorLabel"]]
            task_dir = os.path.join(work_dir, name)
            os.makedirs(os.path.join(task_dir, "parameters"), exist_ok=True)
            executor_input = self.executor_input(name, task_dir)
            log_path = os.path.join(work_dir, f"{name}.log")
            started = time.time()
            if "importer" in executor:
                self._run_importer(name, executor["importer"], executor_input)
            else:
                container = executor["container"]
                hook = container.get("lifecycle", {}).get("preCacheCheck")
                if hook and self.engine == "vertex":  # only Vertex runs the driver hook
                    self._exec(
                        name,
                        self._command(hook["command"], hook.get("args", []), executor_input),
                        env,
                        log_path,
                    )
                argv = self._command(
                    container.get("command", []), container.get("args", []), executor_input
                )
                if self.launcher:
                    argv = self._through_launcher(name, task_dir, argv, executor_input)
                self._exec(name, argv, env, log_path)
                self._record_outputs(name, executor_input)
            done.append({"task": name, "seconds": round(time.time() - started, 1), "log": log_path})
            log.info("dry-run: %s done in %.1f s", name, time.time() - started)
        return {"tasks": done, "pushed": self.pushed, "logs": work_dir}

    # --- the pod's side: the image's uid, the launcher's mounts, the bucket ----------------------
    def _prepare_pod_side(self, work_dir: str, env: dict[str, str]) -> None:
        """The bucket (writable by the pod's identity), the marker log, the task home, and,
        when running as the image's uid, who owns what (only the launcher's mounts and the
        bucket are the uid's)."""
        os.makedirs(self.storage.root, exist_ok=True)
        self.store = kfp_launcher.ObjectStore(
            self.storage.root, os.path.join(work_dir, "object-store-markers.log")
        )
        open(self.store.marker_log, "a").close()
        env[kfp_launcher.STORE_ENV] = self.store.env_value()
        home = os.path.join(work_dir, "home")
        os.makedirs(home, exist_ok=True)
        env["HOME"] = home  # the image user's home (deploy/pipeline.Dockerfile creates it)
        if self.run_as is None:
            return
        uid, gid = self.run_as
        for path in (self.storage.root, work_dir):
            # TensorFlow tests paths with access(2), which checks the real uid's own rights
            # (no capability): the bucket and the task folders must be reachable for real.
            blocked = _blocked_for(path, uid, gid)
            if blocked:
                raise DryRunError(
                    f"uid {uid} cannot reach {path} ({blocked} is closed to it): put "
                    "the storage and work folders under /tmp, mode 755"
                )
        os.chmod(work_dir, 0o755)
        os.chmod(os.path.join(work_dir, "image-site"), 0o755)
        for folder, _, files in os.walk(self.storage.root):
            os.chown(folder, uid, gid)
            for file_name in files:
                os.chown(os.path.join(folder, file_name), uid, gid)
        for path in (self.store.marker_log, home):
            os.chown(path, uid, gid)

    def _through_launcher(
        self, name: str, task_dir: str, argv: list[str], executor_input: dict[str, Any]
    ) -> list[str]:
        """The task's command behind pipeline/compat/kfp_launcher.py, in a pod folder of its own."""
        pod_root = os.path.join(task_dir, "pod")
        os.makedirs(pod_root, exist_ok=True)
        os.chmod(pod_root, 0o755)
        for mount in kfp_launcher.LAUNCHER_MOUNTS:
            path = os.path.join(pod_root, mount)
            os.makedirs(path, exist_ok=True)
            if self.run_as and mount in self.writable_mounts:
                os.chown(path, *self.run_as)  # a volume of the pod's, writable by its uid
        if self.run_as:
            for folder, _, _files in os.walk(task_dir):
                if os.path.commonpath([folder, pod_root]) != pod_root:
                    os.chown(folder, *self.run_as)  # /tmp/kfp_outputs and the parameter files
        spec = {
            "executor_input": executor_input,
            "pod_root": pod_root,
            "store": self.store.env_value(),
            "command": argv,
            "cwd": self.project_dir,
        }
        spec_path = os.path.join(task_dir, "launcher.json")
        with open(spec_path, "w") as handle:
            json.dump(spec, handle)
        os.chmod(spec_path, 0o644)
        return [self.python, "-m", "pipeline.compat.kfp_launcher", spec_path]

    def _run_importer(
        self, name: str, importer: dict[str, Any], executor_input: dict[str, Any]
    ) -> None:
        uri = importer["artifactUri"].get("constant") or importer["artifactUri"].get(
            "constantValue", {}
        ).get("stringValue", "")
        [key] = executor_input["outputs"]["artifacts"]
        artifact = {
            "name": str(self._next_id),
            "uri": uri,
            "type": importer["typeSchema"],
            "metadata": importer.get("metadata", {}),
        }
        self._next_id += 1
        self.outputs[name] = {"artifacts": {key: [artifact]}, "parameters": {}}

    def _fill_tree_fingerprint(self) -> None:
        """What `breastdx run create` passes: a digest of the image tree the ExampleGen reads."""
        declared = self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        if TREE_FINGERPRINT not in declared or TREE_FINGERPRINT in self.parameters:
            return
        from components.image_ingest import layouts

        for task in self.spec["root"]["dag"]["tasks"].values():
            parameters = task.get("inputs", {}).get("parameters", {})
            if (
                parameters.get(TREE_FINGERPRINT, {}).get("componentInputParameter")
                == TREE_FINGERPRINT
            ):
                root = self.storage.local(
                    self._parameter("ImageExampleGen", "input_base", parameters["input_base"])
                )
                if not os.path.isdir(root):
                    raise DryRunError(
                        f"image root {root} (for {parameters['input_base']}) does not exist: "
                        "put the images there first"
                    )
                self.parameters[TREE_FINGERPRINT] = layouts.fingerprint(root)
                return


def _blocked_for(path: str, uid: int, gid: int) -> str | None:
    """The first folder on the way to ``path`` that ``uid``/``gid`` may not enter, or None."""
    folders = [os.path.realpath(path)]
    while folders[-1] != os.path.dirname(folders[-1]):
        folders.append(os.path.dirname(folders[-1]))
    for folder in reversed(folders[1:]):
        info = os.stat(folder)
        shift = 6 if info.st_uid == uid else 3 if info.st_gid == gid else 0
        if not (info.st_mode >> shift) & 1:
            return folder
    return None
