"""pipeline/compat/kfp_shim.py: each of the five fixes, on executor inputs shaped as the
open-source KFP 2 driver builds them (kubeflow/pipelines backend/src/v2/metadata/client.go:
input artifacts named by their ML Metadata id, metadata from the producer's properties,
``type.instanceSchema`` empty or absent), first through TFX's stock code (which fails),
then with the shim installed. The shim patches TFX modules process-wide, so each check
runs in a fresh interpreter, as a task pod would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARTIFACT_CHECKS = textwrap.dedent("""
    import json, sys
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as utils

    def runtime(**fields):
        return json_format.ParseDict(fields, pipeline_spec_pb2.RuntimeArtifact())

    # As the KFP 2 driver hands on a producer's output (OutputArtifact.ToRuntimeArtifact).
    cases = {
        "empty_instance_schema": runtime(name="17", uri="gs://b/r/ImageExampleGen/examples",
                                         type={"instanceSchema": ""},
                                         metadata={"split_names": '["train","eval"]', "display_name": "examples"}),
        "system_title": runtime(name="18", uri="gs://b/r/Trainer/model", type={"schemaTitle": "system.Model"},
                                metadata={"display_name": "model"}),
        "system_dataset_with_splits": runtime(name="19", uri="gs://b/r/Transform/transformed_examples",
                                              type={"schemaTitle": "system.Dataset"},
                                              metadata={"split_names": '["train"]'}),
        "no_type_pushed": runtime(name="20", uri="gs://b/r/Pusher/pushed_model",
                                  metadata={"pushed": 1.0, "pushed_destination": "gs://b/serving/m/3"}),
        # a custom type, typed from the inputs spec: its title is a type name, not a module path
        "custom_type": runtime(name="22", uri="gs://b/r/EvaluationReport/report",
                               type={"instanceSchema": "title: breastdx.EvaluationReport\\ntype: object\\n"},
                               metadata={"display_name": "report"}),
    }

    def parse_all():
        out = {}
        for name, pb in cases.items():
            copy = pipeline_spec_pb2.RuntimeArtifact(); copy.CopyFrom(pb)
            try:
                artifact = utils._parse_raw_artifact(copy, {})
                out[name] = [type(artifact).__name__, artifact.uri,
                             getattr(artifact, "split_names", None) if name != "no_type_pushed" else
                             artifact.get_string_custom_property("pushed_destination"), artifact.type_name]
            except Exception as err:  # what TFX's stock entrypoint does with it
                out[name] = ["error", type(err).__name__]
        return out

    # Fix 4: an input that carries no type and no telling metadata; the task's inputs spec knows.
    inputs = json_format.ParseDict({"artifacts": {"schema": {"artifacts": [
        {"name": "21", "uri": "gs://b/r/ImportSchemaGen/schema", "type": {"instanceSchema": ""}, "metadata": {}}]}}},
        pipeline_spec_pb2.ExecutorInput.Inputs())
    spec = {"artifacts": {"schema": {"artifactType": {"instanceSchema": "title: tfx.Schema\\ntype: object\\n"}}}}
    sys.argv = ["kubeflow_v2_run_executor", "--json_serialized_inputs_spec_args", json.dumps(spec)]

    def parse_inputs():
        copy = pipeline_spec_pb2.ExecutorInput.Inputs(); copy.CopyFrom(inputs)
        try:
            return type(utils.parse_raw_artifact_dict(copy.artifacts, {})["schema"][0]).__name__
        except Exception as err:
            return "error " + type(err).__name__

    result = {"stock": parse_all(), "stock_inputs": parse_inputs()}
    import pipeline.compat.kfp_shim as shim
    shim.install()
    result["shim"] = parse_all()
    result["shim_inputs"] = parse_inputs()
    print("RESULT " + json.dumps(result))
""")

LAYOUT_CHECK = textwrap.dedent("""
    import json, pipeline.compat.kfp_shim as shim
    shim.install()
    from tfx.utils import path_utils
    print("RESULT " + json.dumps(path_utils.serving_model_dir("gs://b/r/Trainer/model")))
""")


def _run(script, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("KFP_POD_NAME",)}
    env.update(env_extra or {})
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [out for out in done.stdout.splitlines() if out.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def parsed():
    return _run(ARTIFACT_CHECKS)


def test_stock_tfx_fails_on_what_the_kfp_driver_sends(parsed):
    stock = parsed["stock"]
    assert stock["empty_instance_schema"] == [
        "error",
        "AttributeError",
    ]  # yaml.safe_load("") is None (fix 2)
    assert stock["system_title"][0] == "error"  # "system.Model" imported as a class path (fix 1)
    assert stock["no_type_pushed"][0] == "error"  # no type at all (fixes 2, 3)
    assert parsed["stock_inputs"].startswith("error")


def test_fix_2_and_3_empty_schema_typed_from_metadata_keys(parsed):
    assert parsed["shim"]["empty_instance_schema"][:3] == [
        "Examples",
        "gs://b/r/ImageExampleGen/examples",
        '["train","eval"]',
    ]
    assert parsed["shim"]["no_type_pushed"][:3] == [
        "PushedModel",
        "gs://b/r/Pusher/pushed_model",
        "gs://b/serving/m/3",
    ]


def test_custom_artifact_types_keep_their_type_name(parsed):
    """Found by the dry run: TFX imports a custom type's schema title as a class path."""
    assert parsed["stock"]["custom_type"][0] == "error"
    assert parsed["shim"]["custom_type"][3] == "breastdx.EvaluationReport"


def test_fix_1_system_titles_map_to_tfx_classes(parsed):
    assert parsed["shim"]["system_title"][:2] == ["Model", "gs://b/r/Trainer/model"]
    assert parsed["shim"]["system_dataset_with_splits"][0] == "Examples"


def test_fix_4_input_types_come_from_the_tasks_inputs_spec(parsed):
    assert parsed["shim_inputs"] == "Schema"


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"KFP_POD_NAME": "breastdx-abc-123"},
            "gs://b/r/Trainer/model",
        ),  # open-source KFP: flat (fix 5)
        ({}, "gs://b/r/Trainer/model/Format-Serving"),  # Vertex AI (no KFP_POD_NAME): TFX's layout
    ],
)
def test_fix_5_flat_model_folder_only_under_the_open_source_launcher(env, expected):
    assert _run(LAYOUT_CHECK, env) == expected


def test_install_writes_a_pth_that_installs_the_hook(tmp_path):
    from pipeline.compat import kfp_shim

    path = kfp_shim.install_pth(str(tmp_path))
    with open(path) as handle:
        line = handle.read()
    assert (
        line.startswith("import ") and "kfp_shim" in line and line.count("\n") == 1
    )  # a .pth import line


VERTEX_DRIVER_CHECK = textwrap.dedent("""
    import json, os, sys
    import pipeline.compat.kfp_shim as shim
    shim.install()
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver
    root, out = sys.argv[1], sys.argv[2]
    executor_input = json_format.ParseDict({
        "inputs": {"parameterValues": {"input_base": root,
                                       "input_config": json.dumps({"splits": [{"name": "images", "pattern": "**"}]}),
                                       "output_config": "{}", "output_data_format": 6.0}},
        "outputs": {"artifacts": {"examples": {"artifacts": [{"uri": out + "/examples",
                                                               "type": {"schemaTitle": "tfx.Examples"}}]}},
                    "outputFile": out + "/executor_output.json"}}, pipeline_spec_pb2.ExecutorInput())
    inputs_spec = json_format.ParseDict({"parameters": {
        "input_base": {"parameterType": "STRING"}, "input_config": {"parameterType": "STRING"},
        "output_config": {"parameterType": "STRING"}, "output_data_format": {"parameterType": "NUMBER_INTEGER"}}},
        pipeline_spec_pb2.ComponentInputsSpec())
    driver._run_driver(executor_input, inputs_spec)  # what the compiled hook passes (schema 2.1)
    with open(out + "/executor_output.json") as handle:
        print("RESULT " + json.dumps(json.load(handle)["parameterValues"]["input_fingerprint"]))
""")


def test_vertex_pre_cache_driver_fingerprints_the_whole_image_tree(tmp_path):
    """Vertex runs TFX's stock V2 ExampleGen driver before ImageExampleGen: with the shim it
    fingerprints every file under the root (three folders deep), so a changed image
    changes the cache key."""
    from pipeline import synthetic

    root = tmp_path / "images"
    synthetic.write_idc(str(root), patients=2, patches_per_patient=2, seed=1)
    script = VERTEX_DRIVER_CHECK + "\n"

    def fingerprint():
        return _run(
            script.replace("sys.argv[1], sys.argv[2]", f"{str(root)!r}, {str(tmp_path / 'out')!r}")
        )

    first = fingerprint()
    assert first.startswith("image_tree:")
    deep = sorted(root.glob("*/*/*.png"))[0]
    os.utime(deep, ns=(1_000_000_000, 1_000_000_000))
    assert fingerprint() != first
