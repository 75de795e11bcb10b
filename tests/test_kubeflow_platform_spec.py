"""kubeflow_runner.add_platform_spec: the Trainer's node selector and tolerations and every
step's image pull secrets, in the `platforms.kubernetes` document KFP reads (TFX compiles
none), from BREASTDX_TRAINER_NODE_SELECTOR / _TRAINER_TOLERATIONS / _IMAGE_PULL_SECRETS.

What is emitted is parsed strictly against two protos: KFP's PlatformSpec (kfp-pipeline-spec,
installed) around it, and kfp-kubernetes' KubernetesExecutorConfig for each executor. The
latter's package cannot be installed beside protobuf 3.20.3 in the versions that know
tolerations and pull secrets (kfp-kubernetes >= 1.2 needs protobuf 4), so the test builds
the messages it uses from the field names and numbers of
kubeflow/pipelines kubernetes_platform/proto/kubernetes_executor_config.proto (the file KFP's
driver is generated from; `secret_name` is the field KFP 2.2's driver reads and later ones
still honour).
"""

from __future__ import annotations

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from breastdx_core import cluster_configs

F = descriptor_pb2.FieldDescriptorProto
# (message, [(field, number, type, label, message type)]) from kubernetes_executor_config.proto
UPSTREAM_FIELDS = {
    "KubernetesExecutorConfig": [
        ("node_selector", 4, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, "NodeSelector"),
        ("image_pull_secret", 6, F.TYPE_MESSAGE, F.LABEL_REPEATED, "ImagePullSecret"),
        ("tolerations", 12, F.TYPE_MESSAGE, F.LABEL_REPEATED, "Toleration"),
    ],
    "ImagePullSecret": [("secret_name", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, None)],
    "Toleration": [
        ("key", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
        ("operator", 2, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
        ("value", 3, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
        ("effect", 4, F.TYPE_STRING, F.LABEL_OPTIONAL, None),
        ("toleration_seconds", 5, F.TYPE_INT64, F.LABEL_OPTIONAL, None),
    ],
}


def executor_config_class():
    """kfp_kubernetes.KubernetesExecutorConfig, the fields this project emits."""
    file = descriptor_pb2.FileDescriptorProto(
        name="breastdx_test_kfp_kubernetes.proto", package="kfp_kubernetes", syntax="proto3"
    )
    for name, fields in UPSTREAM_FIELDS.items():
        message = file.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            message.field.add(
                name=field,
                number=number,
                type=kind,
                label=label,
                type_name=f".kfp_kubernetes.{type_name}" if type_name else None,
            )
    selector = file.message_type.add(name="NodeSelector")  # map<string, string> labels = 1
    entry = selector.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    selector.field.add(
        name="labels",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".kfp_kubernetes.NodeSelector.LabelsEntry",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName("kfp_kubernetes.KubernetesExecutorConfig")
    )


def check_platform_spec(platform) -> None:
    """Raises json_format.ParseError on a field KFP's protos do not have."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    config_class = executor_config_class()
    for config in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        json_format.ParseDict(config, config_class())


SPEC = {
    "root": {
        "dag": {
            "tasks": {
                "Trainer": {"componentRef": {"name": "Trainer"}},
                "Pusher": {"componentRef": {"name": "Pusher"}},
            }
        }
    },
    "components": {
        "Trainer": {"executorLabel": "Trainer_executor"},
        "Pusher": {"executorLabel": "Pusher_executor"},
    },
    "deploymentSpec": {
        "executors": {"Trainer_executor": {"container": {}}, "Pusher_executor": {"container": {}}}
    },
}
POOL_ENV = {
    "BREASTDX_TRAINER_NODE_SELECTOR": "cloud.google.com/gke-nodepool=gpu",
    "BREASTDX_TRAINER_TOLERATIONS": "breastdx.io/pool=gpu:NoSchedule,nvidia.com/gpu:NoSchedule",
    "BREASTDX_IMAGE_PULL_SECRETS": "regcred",
}


def test_trainer_gets_the_pool_and_every_step_the_pull_secret():
    import kubeflow_runner

    configs = kubeflow_runner.kubernetes_executor_configs(SPEC, cluster_configs.load(env=POOL_ENV))
    assert configs["Trainer_executor"] == {
        "nodeSelector": {"labels": {"cloud.google.com/gke-nodepool": "gpu"}},
        "tolerations": [
            {
                "key": "breastdx.io/pool",
                "operator": "Equal",
                "effect": "NoSchedule",
                "value": "gpu",
            },
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ],
        "imagePullSecret": [{"secretName": "regcred"}],
    }
    assert configs["Pusher_executor"] == {"imagePullSecret": [{"secretName": "regcred"}]}
    assert kubeflow_runner.kubernetes_executor_configs(SPEC, cluster_configs.load(env={})) == {}


def test_what_is_emitted_parses_against_kfps_protos(tmp_path):
    import kubeflow_runner

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    platform = kubeflow_runner.add_platform_spec(str(path), cluster_configs.load(env=POOL_ENV))
    check_platform_spec(platform)
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents == [SPEC, platform]
    # idempotent: a second pass replaces the platform document, never stacks another
    kubeflow_runner.add_platform_spec(str(path), cluster_configs.load(env=POOL_ENV))
    assert len(list(yaml.safe_load_all(path.read_text()))) == 2


@pytest.mark.parametrize(
    "config",
    [
        {"nodeSelector": {"matchLabels": {"a": "b"}}},  # not the proto's name
        {"tolerations": [{"key": "a", "effect": "NoSchedule", "tolerationSecs": 5}]},
        {"imagePullSecrets": [{"secretName": "x"}]},  # Kubernetes' plural, not KFP's field
    ],
)
def test_the_proto_check_refuses_wrong_field_names(config):
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"e": config}}}}}
    with pytest.raises(json_format.ParseError):
        check_platform_spec(platform)


@pytest.mark.parametrize(
    "env, needle",
    [
        (
            {"BREASTDX_TRAINER_NODE_SELECTOR": "gpu"},
            "BREASTDX_TRAINER_NODE_SELECTOR takes key=value",
        ),
        (
            {"BREASTDX_TRAINER_TOLERATIONS": "nvidia.com/gpu=present"},
            "BREASTDX_TRAINER_TOLERATIONS takes",
        ),
        ({"BREASTDX_TRAINER_TOLERATIONS": "a=b:NoWay"}, "effect among"),
        (
            {"BREASTDX_IMAGE_PULL_SECRETS": "Reg_Cred"},
            "BREASTDX_IMAGE_PULL_SECRETS takes Secret names",
        ),
    ],
)
def test_malformed_pool_settings_name_the_variable(env, needle):
    with pytest.raises(cluster_configs.ClusterConfigError, match=needle):
        cluster_configs.load(env=env)


def test_a_package_with_a_platform_document_still_loads(tmp_path):
    """`breastdx pipeline create|dry-run` read the package through dry_run.load_package."""
    import kubeflow_runner
    from pipeline.compat import dry_run

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    kubeflow_runner.add_platform_spec(str(path), cluster_configs.load(env=POOL_ENV))
    assert dry_run.load_package(str(path)) == (SPEC, {})
