"""Canaries for the framework workarounds indexed in docs/compat.md.

Each test asserts the upstream behaviour a workaround exists for. When a TFX or KFP upgrade
changes that behaviour the test fails, and docs/compat.md says which workaround can then go.
Entries tested elsewhere: the KFP shim's fixes 1-4 (tests/test_kfp_shim.py
`test_stock_tfx_fails_on_what_the_kfp_driver_sends`) and the hand-written tf.Example encoder
(tests/test_ingest_labels.py `test_serialize_example_is_the_protobufs_serialization`).
"""

from __future__ import annotations

import importlib.util
import inspect

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.orchestration.kubeflow.v2 import step_builder
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.utils import import_utils


def test_step_builder_drops_a_file_based_example_gens_resources():
    """kubeflow_runner.add_step_resources: delete it when this fails."""
    source = inspect.getsource(step_builder.StepBuilder._build_file_based_example_gen_spec)
    assert "platform_config" not in source and "resources" not in source
    # Other components keep theirs, so only the ExampleGen needs the rewrite.
    assert "platform_config" in inspect.getsource(step_builder.StepBuilder._build_container_spec)


def test_entrypoint_imports_a_custom_artifact_type_by_its_schema_title():
    """components/__init__.py `__getattr__`: the title is the import path of the class."""
    schema = pipeline_spec_pb2.ArtifactTypeSchema(schema_title="components.EvaluationReport")
    path = kubeflow_v2_entrypoint_utils._retrieve_class_path(schema)
    assert path == "components.EvaluationReport"
    from components.evaluation_report import EvaluationReportArtifact

    assert import_utils.import_class_by_path(path) is EvaluationReportArtifact


def test_tfx_still_compiles_a_resolver_to_a_resolver_executor():
    """components/baseline_evaluator.py: open-source KFP 2 refuses resolver executors."""
    assert hasattr(step_builder, "ResolverSpec")
    assert "_build_resolver_spec" in inspect.getsource(step_builder.StepBuilder)


def test_tfx_partition_function_is_private_with_the_signature_ingest_calls():
    """components/image_ingest/executor.py calls TFX's private `_PartitionFn`."""
    params = list(inspect.signature(base_example_gen_executor._PartitionFn).parameters)
    assert params == ["record", "num_partitions", "buckets", "split_config"]


def test_kfp_local_cannot_run_a_whole_pipeline():
    """pipeline/compat/dry_run.py: kfp 2.5 runs single components locally, not a compiled DAG."""
    assert importlib.util.find_spec("kfp.local") is not None
    assert importlib.util.find_spec("kfp.local.pipeline_orchestrator") is None
