"""breastdx_core/cluster_configs.py: defaults, BREASTDX_* overrides, and the messages that
name what to set."""

from __future__ import annotations

import pytest

from breastdx_core import cluster_configs, configs


def test_env_overrides_and_engine_defaults():
    cluster = cluster_configs.load(
        env={
            "BREASTDX_ENGINE": "vertex",
            "BREASTDX_GPU_COUNT": "2",
            "BREASTDX_TRAINER_MEMORY_GB": "52",
            "BREASTDX_TASK": "busi",
        }
    )
    assert (
        cluster.gpu_type == "NVIDIA_TESLA_T4"
        and cluster.gpu_count == 2
        and cluster.trainer_memory_gb == 52.0
    )
    assert (
        cluster_configs.load(env={}).gpu_type == "nvidia.com/gpu"
    )  # KFP: the Kubernetes resource name
    assert (
        cluster_configs.load(env={}, engine="kfp", gpu_count=0).trainer_resources()[
            "accelerator_type"
        ]
        == ""
    )


def test_dataflow_args_need_a_project_and_use_the_image():
    cluster = cluster_configs.load(
        env={}, beam_runner="DataflowRunner", gcs_root="gs://b/x/", image="r/i:t"
    )
    with pytest.raises(cluster_configs.ClusterConfigError, match="BREASTDX_DATAFLOW_PROJECT"):
        cluster.beam_pipeline_args()
    cluster.dataflow_project = "p"
    args = cluster.beam_pipeline_args()
    assert "--temp_location=gs://b/x/tmp" in args and "--sdk_container_image=r/i:t" in args


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"BREASTDX_ENGINE": "argo"}, "BREASTDX_ENGINE"),
        ({"BREASTDX_GPU_COUNT": "one"}, "BREASTDX_GPU_COUNT must be a number"),
        ({"BREASTDX_DISTRIBUTION_STRATEGY": "tpu"}, "BREASTDX_DISTRIBUTION_STRATEGY"),
        (
            {"BREASTDX_DISTRIBUTION_STRATEGY": "multi_worker_mirrored"},
            "nothing would start the other workers",
        ),
        ({"BREASTDX_BEAM_DIRECT_MODE": "threads"}, "BREASTDX_BEAM_DIRECT_MODE"),
    ],
)
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(cluster_configs.ClusterConfigError, match=needle):
        cluster_configs.load(env=env)


def test_cluster_variables_do_not_reach_the_pipeline_config():
    env = {"BREASTDX_IMAGE": "r/i:t", "BREASTDX_TASK": "busi"}
    assert configs.load(env=cluster_configs.without_cluster_env(env)).task == "busi"


def test_direct_runner_mode():
    assert (
        "--direct_running_mode=multi_processing"
        in cluster_configs.load(env={}).beam_pipeline_args()
    )
    assert cluster_configs.load(
        env={"BREASTDX_BEAM_DIRECT_MODE": "in_memory"}
    ).beam_pipeline_args() == ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
