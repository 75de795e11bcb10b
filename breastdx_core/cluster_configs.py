"""Settings of the cluster path: where the pipeline runs, with what image and resources.

`kubeflow_runner.py` and the `breastdx pipeline …` / `breastdx run …` verbs
(breastdx_cli/kfp.py) build a `ClusterConfig` with `load()`, the one place where
``BREASTDX_*`` environment variables and CLI flags override the defaults below.
The model's own settings stay in `breastdx_core/configs.py`; the names here are disjoint
from those (`ENV_NAMES` lists them, so `configs.load()` can skip them).

No project id, bucket or registry is a default: those left empty fail with a message
that names the variable to set.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import time
from collections.abc import Mapping
from typing import Any

from breastdx_core import errors, loader

ENV_PREFIX = "BREASTDX_"
ENGINES = ("kfp", "vertex")
BEAM_RUNNERS = ("DirectRunner", "DataflowRunner")
KFP_AUTH_MODES = ("none", "iap", "token")
# One Trainer pod, all its GPUs. Multi-worker training is not offered: nothing in a KFP
# task launches the other workers or sets TF_CONFIG (that needs Vertex custom training,
# tfx.extensions.google_cloud_ai_platform.Trainer, which open-source KFP cannot run).
DISTRIBUTION_STRATEGIES = ("none", "mirrored")

# The accelerator name each engine expects in a ResourceSpec: Kubeflow Pipelines puts
# it verbatim into the pod's resource limits (a Kubernetes extended resource), Vertex
# AI takes a machine accelerator type (and picks the GPU model from it).
DEFAULT_GPU_TYPE = {"kfp": "nvidia.com/gpu", "vertex": "NVIDIA_TESLA_T4"}

# Package the compiled pipeline as: KFP's upload API takes a bare PipelineSpec (YAML),
# Vertex a PipelineJob (JSON, pipeline root included).
PACKAGE_SUFFIX = {"kfp": ".yaml", "vertex": ".json"}

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(PROJECT_DIR, "build")


class ClusterConfigError(errors.UserError):
    """A cluster setting is missing or wrong; the message names the variable/flag."""


@dataclasses.dataclass
class ClusterConfig:
    """Cluster settings. Empty strings mean "not set"; `require()` names what is missing."""

    engine: str = "kfp"  # one of ENGINES
    # The pipeline image (deploy/pipeline.Dockerfile): TFX plus this project installed,
    # so Transform and Trainer load user code by module path.
    image: str = ""
    # gs://BUCKET/PREFIX: becomes the pipeline config's workdir, so the pipeline root,
    # data root and serving root all live under it.
    gcs_root: str = ""
    # Where deploy/pipeline.Dockerfile puts the project: files the pipeline reads from
    # the source tree (the curated schema) are referred to there.
    image_project_dir: str = "/opt/breastdx"

    # Trainer resources (GPU node pool on GKE, a GPU machine on Vertex)
    gpu_type: str = ""  # default per engine: DEFAULT_GPU_TYPE
    gpu_count: int = 1  # 0: train on CPU
    # Requests are what the scheduler reserves: they must fit the GPU node's allocatable
    # (n1-standard-8 + T4 on GKE: 7.91 vCPU, ~26.4 GiB, less the system DaemonSets; checked
    # in tests/test_kubeflow_runner.py). Vertex picks the machine from the limits:
    # n1-standard-8 with a T4 for these.
    trainer_cpu: float = 7.5  # vCPU limit
    trainer_memory_gb: float = 25.0  # GB (10^9 bytes) limit
    trainer_cpu_request: float = 7.0  # vCPU request
    trainer_memory_request_gb: float = 24.0  # GB request
    # Every other step (data components; Beam DirectRunner in the pod): on the CPU pool.
    step_cpu: float = 2.0  # vCPU limit
    step_memory_gb: float = 8.0  # GB limit
    step_cpu_request: float = 1.0
    step_memory_request_gb: float = 4.0
    distribution_strategy: str = (
        "mirrored"  # one of DISTRIBUTION_STRATEGIES, for the Trainer module
    )
    # Where KFP may put the Trainer's pod, in the package's platforms.kubernetes section
    # (TFX compiles none; KFP's driver reads it): a GPU pool's node labels and the taints it
    # tolerates. Empty on GKE's default (GKE adds the nvidia.com/gpu toleration itself).
    # "key=value[,key=value]", e.g. cloud.google.com/gke-nodepool=gpu
    trainer_node_selector: str = ""
    trainer_tolerations: str = ""  # kubectl's taint form "key[=value]:Effect[,...]"
    # Secrets (in the run's namespace) for pulling the pipeline image, on every step: "a[,b]"
    image_pull_secrets: str = ""

    # Beam for the data components
    beam_runner: str = "DirectRunner"  # one of BEAM_RUNNERS
    dataflow_project: str = ""  # default: vertex_project
    dataflow_region: str = "us-central1"
    dataflow_temp_location: str = ""  # default: <gcs_root>/tmp
    dataflow_max_workers: int = 10
    dataflow_machine_type: str = "n1-standard-4"
    beam_direct_workers: int = 0  # DirectRunner in a pod: 0 = one per CPU
    # DirectRunner mode: multi_processing (a pod's CPUs) or in_memory (one process: faster
    # on small data, what `breastdx pipeline dry-run`'s test uses)
    beam_direct_mode: str = "multi_processing"

    # Kubeflow Pipelines 2 (engine kfp)
    kfp_endpoint: str = ""  # e.g. http://localhost:8080 after `kubectl port-forward`
    kfp_namespace: str = "kubeflow"
    # How `breastdx pipeline|run` authenticate to the KFP API (breastdx_cli/kfp.py):
    # none (a port-forward), iap (an ID token for the IAP OAuth client, from google-auth:
    # a service-account key in GOOGLE_APPLICATION_CREDENTIALS or the GCE/GKE metadata
    # server), token (a bearer token: multi-user Kubeflow, or an ID token minted elsewhere).
    kfp_auth: str = "none"  # one of KFP_AUTH_MODES
    kfp_iap_client_id: str = ""  # the OAuth client id of the IAP in front of KFP (auth iap)
    kfp_token: str = ""  # auth token: the bearer token itself (a secret: environment only)
    kfp_token_file: str = (
        ""  # auth token: a file holding it (e.g. a projected service-account token)
    )
    experiment: str = "breastdx"

    # Vertex AI Pipelines (engine vertex)
    vertex_project: str = ""
    vertex_region: str = "us-central1"
    vertex_service_account: str = ""  # empty: the project's default compute account
    # Labels on every PipelineJob (k=v,k2=v2: cost attribution) and the VPC network its
    # pods peer with (projects/NUMBER/global/networks/NAME; empty: none).
    vertex_labels: str = ""
    vertex_network: str = ""

    # where `pipeline compile` writes the package (local file)
    package_path: str = ""  # default: build/<pipeline_name>.yaml (kfp) or .json (vertex)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ClusterConfigError(
                f"BREASTDX_ENGINE must be one of {ENGINES}, got {self.engine!r}"
            )
        if self.beam_direct_mode not in ("multi_processing", "in_memory"):
            raise ClusterConfigError(
                f"BREASTDX_BEAM_DIRECT_MODE must be multi_processing or in_memory, "
                f"got {self.beam_direct_mode!r}"
            )
        if self.beam_runner not in BEAM_RUNNERS:
            raise ClusterConfigError(
                f"BREASTDX_BEAM_RUNNER must be one of {BEAM_RUNNERS}, got {self.beam_runner!r}"
            )
        if self.distribution_strategy == "multi_worker_mirrored":
            raise ClusterConfigError(
                "BREASTDX_DISTRIBUTION_STRATEGY=multi_worker_mirrored is not supported: a pipeline task is one pod "
                "and nothing would start the other workers or set TF_CONFIG; use mirrored (all GPUs of the "
                "Trainer's node, BREASTDX_GPU_COUNT)"
            )
        if self.distribution_strategy not in DISTRIBUTION_STRATEGIES:
            raise ClusterConfigError(
                f"BREASTDX_DISTRIBUTION_STRATEGY must be one of {DISTRIBUTION_STRATEGIES}, "
                f"got {self.distribution_strategy!r}"
            )
        if self.kfp_auth not in KFP_AUTH_MODES:
            raise ClusterConfigError(
                f"BREASTDX_KFP_AUTH must be one of {KFP_AUTH_MODES}, got {self.kfp_auth!r}"
            )
        if self.gpu_count < 0:
            raise ClusterConfigError(f"BREASTDX_GPU_COUNT must be >= 0, got {self.gpu_count}")
        if not self.gpu_type:
            self.gpu_type = DEFAULT_GPU_TYPE[self.engine]
        self.node_selector_labels(), self.toleration_list(), self.pull_secret_names()  # fail early
        self.gcs_root = self.gcs_root.rstrip("/")

    # --- checks at the edge ------------------------------------------------------------
    def vertex_labels_dict(self) -> dict[str, str]:
        """``vertex_labels`` as a dict.

        Raises:
            ClusterConfigError: an item is not ``key=value``.
        """
        labels: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.vertex_labels.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ClusterConfigError(
                    f"BREASTDX_VERTEX_LABELS takes key=value,key=value; got {item!r}"
                )
            labels[key.strip()] = value.strip()
        return labels

    def require(self, *names: str) -> None:
        """Raises ClusterConfigError naming the first unset setting among ``names``."""
        for name in names:
            if getattr(self, name) in ("", None):
                raise ClusterConfigError(
                    f"{_HINTS.get(name, name)} is not set: set {env_name(name)} "
                    f"or --{name.replace('_', '-')}"
                )
        if "gcs_root" in names and not self.gcs_root.startswith("gs://"):
            raise ClusterConfigError(
                f"BREASTDX_GCS_ROOT must be a gs:// path (the cluster cannot read this machine's "
                f"disk), got {self.gcs_root!r}"
            )

    # --- derived -----------------------------------------------------------------------
    def package_for(self, pipeline_name: str) -> str:
        return self.package_path or os.path.join(
            BUILD_DIR, pipeline_name + PACKAGE_SUFFIX[self.engine]
        )

    @property
    def temp_location(self) -> str:
        return self.dataflow_temp_location or posixpath.join(self.gcs_root, "tmp")

    def beam_pipeline_args(self) -> list[str]:
        """Beam flags for the data components (ImageIngest, StatisticsGen, Transform,
        Evaluator) on the cluster."""
        if self.beam_runner == "DirectRunner":
            if self.beam_direct_mode == "in_memory":
                return ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
            return [
                "--runner=DirectRunner",
                f"--direct_running_mode={self.beam_direct_mode}",
                f"--direct_num_workers={self.beam_direct_workers}",
            ]
        project = self.dataflow_project or self.vertex_project
        if not project:
            raise ClusterConfigError(
                "the Dataflow project is not set: set BREASTDX_DATAFLOW_PROJECT "
                "(or BREASTDX_VERTEX_PROJECT)"
            )
        self.require("gcs_root")
        return [
            "--runner=DataflowRunner",
            f"--project={project}",
            f"--region={self.dataflow_region}",
            f"--temp_location={self.temp_location}",
            f"--max_num_workers={self.dataflow_max_workers}",
            f"--machine_type={self.dataflow_machine_type}",
            # Dataflow workers run the same image, so they import the same user code.
            f"--sdk_container_image={self.image}",
            "--experiments=use_runner_v2",
        ]

    def trainer_resources(self) -> dict[str, Any]:
        """What the Trainer's ResourceSpec asks for (kubeflow_runner turns it into the proto)."""
        return {
            "cpu_limit": self.trainer_cpu,
            "memory_limit": self.trainer_memory_gb,
            "cpu_request": self.trainer_cpu_request,
            "memory_request": self.trainer_memory_request_gb,
            "accelerator_type": self.gpu_type if self.gpu_count else "",
            "accelerator_count": self.gpu_count,
        }

    def step_resources(self) -> dict[str, float]:
        """What every step but the Trainer asks for (no accelerator: the CPU pool)."""
        return {
            "cpu_limit": self.step_cpu,
            "memory_limit": self.step_memory_gb,
            "cpu_request": self.step_cpu_request,
            "memory_request": self.step_memory_request_gb,
        }

    # --- the Trainer's pool on Kubernetes (kubeflow_runner.add_platform_spec) ------------
    def node_selector_labels(self) -> dict[str, str]:
        """BREASTDX_TRAINER_NODE_SELECTOR as node labels."""
        labels = {}
        for item in _items(self.trainer_node_selector):
            key, sep, value = item.partition("=")
            if not sep or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
                raise ClusterConfigError(
                    f"BREASTDX_TRAINER_NODE_SELECTOR takes key=value[,key=value] with "
                    f"Kubernetes label keys and values, got {item!r}"
                )
            labels[key] = value
        return labels

    def toleration_list(self) -> list[dict[str, str]]:
        """BREASTDX_TRAINER_TOLERATIONS as tolerations (``key=value:Effect`` tolerates that
        taint, ``key:Effect`` any value of the key)."""
        out = []
        for item in _items(self.trainer_tolerations):
            taint, _, effect = item.rpartition(":")
            key, sep, value = taint.partition("=")
            if (
                effect not in TAINT_EFFECTS
                or not _LABEL_KEY.fullmatch(key)
                or (sep and not _LABEL_VALUE.fullmatch(value))
            ):
                raise ClusterConfigError(
                    f"BREASTDX_TRAINER_TOLERATIONS takes key[=value]:Effect[,...] with an "
                    f"effect among {TAINT_EFFECTS}, got {item!r}"
                )
            toleration = {"key": key, "operator": "Equal" if sep else "Exists", "effect": effect}
            if sep:
                toleration["value"] = value
            out.append(toleration)
        return out

    def pull_secret_names(self) -> list[str]:
        """BREASTDX_IMAGE_PULL_SECRETS as Secret names."""
        names = _items(self.image_pull_secrets)
        bad = [n for n in names if not _SECRET_NAME.fullmatch(n)]
        if bad:
            raise ClusterConfigError(
                f"BREASTDX_IMAGE_PULL_SECRETS takes Secret names (lower case, "
                f"'-' and '.'), got {bad[0]!r}"
            )
        return names


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


_HINTS = {
    "image": "the pipeline container image (deploy/pipeline.Dockerfile, pushed to your registry)",
    "gcs_root": "the pipeline's GCS root (gs://BUCKET/breastdx)",
    "kfp_endpoint": "the Kubeflow Pipelines endpoint (e.g. http://localhost:8080 after kubectl port-forward)",
    "vertex_project": "the Google Cloud project for Vertex AI Pipelines",
    "kfp_iap_client_id": "the IAP OAuth client id of the KFP endpoint (BREASTDX_KFP_AUTH=iap)",
}


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


ENV_NAMES = frozenset(env_name(f.name) for f in dataclasses.fields(ClusterConfig))


def version_name(pipeline_name: str, now: float | None = None) -> str:
    """A pipeline version's name: ``<pipeline>_<UTC YYYYmmddHHMMSS>``, the tfx CLI's form."""
    return f"{pipeline_name}_{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}"


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> ClusterConfig:
    """Builds the cluster settings through `loader.load`, the one loader of every settings
    dataclass: defaults, then ``BREASTDX_<FIELD>`` variables for the fields above (other
    BREASTDX_ variables belong to breastdx_core/configs.py and are left alone), then
    ``overrides`` (CLI flags; None means "not given").

    Raises:
        ClusterConfigError: a value is malformed or out of range.
    """
    env = os.environ if env is None else env
    return ClusterConfig(
        **loader.load(
            ClusterConfig, env, overrides, error=ClusterConfigError, what="cluster setting"
        )
    )


def without_cluster_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` less the cluster variables: what `breastdx_core.configs.load(env=…)` may see."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k not in ENV_NAMES}
