"""Canaries for the framework workarounds indexed in docs/compat.md, and a check of the index.

The index check: every module of pipeline/compat/ and every function of components/compat.py
has a row, and every row a condition to delete it and a canary. Each canary asserts the
upstream behaviour a workaround exists for: when a TFX or KFP upgrade changes it the test
fails, and docs/compat.md says which workaround can then go. Entries tested elsewhere: the
KFP shim's fixes 1-4 (tests/test_kfp_shim.py `test_stock_tfx_fails_on_what_the_kfp_driver_sends`),
the tfx CLI's kubeflow engine (tests/test_tfx_cli_kubeflow.py) and the hand-written tf.Example
encoder (tests/test_example_encoder.py `test_serialize_example_is_the_protobufs_serialization`).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.orchestration.kubeflow.v2 import step_builder
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.utils import import_utils

from components import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INDEX = os.path.join(ROOT, "docs", "compat.md")


def _index_rows():
    with open(INDEX, encoding="utf-8") as handle:
        lines = [line for line in handle if line.startswith("| ") and "---" not in line]
    header, rows = lines[0], lines[1:]
    columns = [cell.strip() for cell in header.strip().strip("|").split("|")]
    return columns, [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]


def test_every_workaround_has_a_row_with_a_canary_and_a_way_out():
    """A workaround module or function added without its row (or a row without a test that
    names the upstream behaviour, or without the condition to delete it) fails here; that
    each named test exists is tests/test_docs_paths.py's check."""
    columns, rows = _index_rows()
    assert columns[-2:] == ["delete when", "canary"], columns
    for row in rows:
        assert len(row) == len(columns), row[0]
        assert row[-2], f"{row[0]}: no condition to delete it"
        assert "::test_" in row[-1] or row[-1].startswith("none here"), f"{row[0]}: no canary"
    named = " ".join(row[1] for row in rows)
    folder = os.path.join(ROOT, "pipeline", "compat")
    modules = {name[:-3] for name in os.listdir(folder) if name.endswith(".py")} - {"__init__"}
    assert {m for m in modules if f"pipeline/compat/{m}" not in named} == set()
    functions = {
        name
        for name, value in vars(compat).items()
        if inspect.isfunction(value) and value.__module__ == compat.__name__
    }
    assert {f for f in functions if not re.search(rf"components/compat\.{f}\b", named)} == set()


def test_step_builder_drops_a_file_based_example_gens_resources():
    """pipeline/compat/example_gen_resources.py: delete it when this fails."""
    source = inspect.getsource(step_builder.StepBuilder._build_file_based_example_gen_spec)
    assert "platform_config" not in source and "resources" not in source
    # Other components keep theirs, so only the ExampleGen needs the rewrite.
    assert "platform_config" in inspect.getsource(step_builder.StepBuilder._build_container_spec)


def test_entrypoint_imports_a_custom_artifact_type_by_its_schema_title():
    """components/compat.py `artifact_types`: the title is the import path of the class."""
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
    """components/compat.py `partition` calls TFX's private `_PartitionFn`."""
    params = list(inspect.signature(base_example_gen_executor._PartitionFn).parameters)
    assert params == ["record", "num_partitions", "buckets", "split_config"]
    assert list(inspect.signature(compat.partition).parameters) == params


def test_kfp_local_cannot_run_a_whole_pipeline():
    """pipeline/compat/dry_run.py: kfp 2.5 runs single components locally, not a compiled DAG."""
    assert importlib.util.find_spec("kfp.local") is not None
    assert importlib.util.find_spec("kfp.local.pipeline_orchestrator") is None


def test_tfx_example_gen_driver_fingerprints_only_the_top_of_the_tree(tmp_path):
    """pipeline/compat/kfp_shim.py's input processor: Vertex's pre-cache check runs TFX's
    stock driver, which builds the processor by its module name and fingerprints what the
    split pattern's glob matches, one folder deep: a change deeper down goes unseen."""
    from tfx.components.example_gen import utils
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver
    from tfx.proto import example_gen_pb2

    assert "input_processor.FileBasedInputProcessor(" in inspect.getsource(driver)
    image = tmp_path / "patient" / "0" / "a.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"1")
    splits = [example_gen_pb2.Input.Split(name="single_split", pattern="**")]

    def fingerprint():
        return utils.calculate_splits_fingerprint_span_and_version(str(tmp_path), splits)[0]

    first = fingerprint()
    image.write_bytes(b"22")
    os.utime(image, ns=(1_000_000_000, 1_000_000_000))
    assert fingerprint() == first
