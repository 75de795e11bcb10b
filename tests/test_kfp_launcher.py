"""What a task meets on an open-source KFP 2 cluster, each failure reproduced and then gone
with its fix, at unit level (seconds): directory markers under KFP's blob-by-blob download
(pipeline/compat/kfp_launcher.py, fixed by pipeline/compat/kfp_shim.py fix 6), a launcher mount the image's
uid cannot write, a pipeline root TFX cannot write, a run parameter without a value or a
default (pipeline/compat/dry_run.py). The whole package through all of them, with the Trainer under
MirroredStrategy, is tests/test_pipeline_e2e.py's dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import console_script
import pytest
import yaml

from pipeline.compat import dry_run, kfp_launcher, kfp_shim

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_URI = "gs://bucket/root/p/run/ImportSchemaGen/schema"


def _store(tmp):
    os.makedirs(os.path.join(tmp, "gcs"), exist_ok=True)
    return kfp_launcher.ObjectStore(os.path.join(tmp, "gcs"), os.path.join(tmp, "markers.log"))


def _write_schema_as_tf_on_gcs_would(store):
    """ImportSchemaGen on GCS: ``fileio.makedirs(<uri>)`` (markers), then the file."""
    file_io = types.SimpleNamespace(
        recursive_create_dir_v2=lambda p: os.makedirs(p, exist_ok=True), create_dir_v2=os.mkdir
    )
    os.environ[kfp_launcher.STORE_ENV] = store.env_value()
    try:
        kfp_launcher.record_directory_markers(file_io)  # what the dry run's tasks get
    finally:
        del os.environ[kfp_launcher.STORE_ENV]
    folder = store.local(SCHEMA_URI[len("gs://") :])
    file_io.recursive_create_dir_v2(folder)
    with open(os.path.join(folder, "schema.pbtxt"), "w") as handle:
        handle.write("feature {}\n")


def test_go_rel_cleans_like_filepath_rel():
    assert kfp_launcher.go_rel("a/b", "a/b/") == "."
    assert kfp_launcher.go_rel("a/b", "a/b/c/d") == "c/d"
    assert kfp_launcher.go_rel("a/model", "a/model_run/x") == "../model_run/x"


def test_markers_break_the_launchers_download_and_fix_6_removes_them(tmp_path):
    store = _store(str(tmp_path))
    _write_schema_as_tf_on_gcs_would(store)
    key = SCHEMA_URI[len("gs://bucket/") :]
    assert store.list("bucket", key) == [(key + "/", 0), (key + "/schema.pbtxt", 11)]
    # the marker lands as a file at the artifact's own path, then MkdirAll under it fails
    with pytest.raises(kfp_launcher.LauncherError, match="not a directory"):
        kfp_launcher.download_blob(
            store, "bucket", key, str(tmp_path / "pod" / "gcs" / "bucket" / key)
        )
    assert (tmp_path / "pod" / "gcs" / "bucket" / key).is_file()

    # fix 6, as the patched entrypoint calls it after the executor: every marker under each output
    kfp_shim.set_marker_store(store)
    try:
        outputs = {"schema": [types.SimpleNamespace(uri=store.local("bucket/" + key))]}
        assert kfp_shim.delete_output_markers(outputs) == 1
    finally:
        kfp_shim._MARKER_STORE.clear()  # pylint: disable=protected-access
    assert [k for k, _ in store.list("bucket", key)] == [key + "/schema.pbtxt"]
    local = tmp_path / "pod2" / "gcs" / "bucket" / key
    assert kfp_launcher.download_blob(store, "bucket", key, str(local)) == 1
    assert (local / "schema.pbtxt").read_text() == "feature {}\n"


def test_fix_6_is_wired_after_the_executor_only_under_open_source_kfp():
    """The patched entrypoint deletes markers before reporting outputs (and TFX still calls
    translate_executor_output after executor.Do: the hook point this fix relies on)."""
    import importlib.util

    tfx_dir = os.path.dirname(importlib.util.find_spec("tfx").origin)  # read, not imported: seconds
    with open(
        os.path.join(
            tfx_dir, "orchestration", "kubeflow", "v2", "container", "kubeflow_v2_run_executor.py"
        )
    ) as handle:
        source = handle.read()
    reported = source.index("kubeflow_v2_entrypoint_utils.translate_executor_output(")
    assert source.index("executor.Do(") < reported
    seen = []
    for env, expected in (({"KFP_POD_NAME": "p"}, ["gs://b/r/T/out"]), ({}, [])):
        module = types.SimpleNamespace(
            _parse_raw_artifact=None,
            parse_raw_artifact_dict=None,
            _retrieve_class_path=None,
            translate_executor_output=lambda o, n: "done",
        )
        old = os.environ.pop("KFP_POD_NAME", None)
        os.environ.update(env)
        try:
            kfp_shim._patch_entrypoint_utils(module)  # pylint: disable=protected-access
        finally:
            os.environ.pop("KFP_POD_NAME", None)
            if old is not None:
                os.environ["KFP_POD_NAME"] = old
        store = types.SimpleNamespace(delete_markers=lambda uri: seen.append(uri) or 0)
        kfp_shim.set_marker_store(store)
        try:
            outputs = {"o": [types.SimpleNamespace(uri="gs://b/r/T/out")]}
            assert module.translate_executor_output(outputs, {}) == "done"
        finally:
            kfp_shim._MARKER_STORE.clear()  # pylint: disable=protected-access
        assert seen == expected
        seen.clear()


def _launch_as_image_user(tmp, writable):
    """One task through pipeline/compat/kfp_launcher.py as the image's uid (this uid when the test
    cannot switch), its /gcs a writable volume or a folder of the image's root file system."""
    store = _store(tmp)
    folder = store.local("bucket/root/p/run/ImportSchemaGen/schema")
    os.makedirs(folder)
    with open(os.path.join(folder, "schema.pbtxt"), "w") as handle:
        handle.write("feature {}\n")
    pod = os.path.join(tmp, "pod")
    for mount in kfp_launcher.LAUNCHER_MOUNTS:
        os.makedirs(os.path.join(pod, mount))
    root = os.geteuid() == 0
    user = {"preexec_fn": kfp_launcher.image_user()} if root else {}
    gcs = os.path.join(pod, "gcs")
    if writable and root:
        os.chown(gcs, kfp_launcher.IMAGE_UID, kfp_launcher.IMAGE_GID)
    elif not writable and not root:
        os.chmod(gcs, 0o555)
    for path, _, _ in os.walk(tmp):
        if root and not path.startswith(pod):
            os.chown(path, kfp_launcher.IMAGE_UID, kfp_launcher.IMAGE_GID)
    executor_input = {
        "inputs": {"artifacts": {"schema": {"artifacts": [{"uri": SCHEMA_URI}]}}},
        "outputs": {
            "artifacts": {
                "statistics": {
                    "artifacts": [{"uri": "gs://bucket/root/p/run/StatisticsGen/statistics"}]
                }
            }
        },
    }
    spec = {
        "executor_input": executor_input,
        "pod_root": pod,
        "store": store.env_value(),
        "cwd": tmp,
        "command": [sys.executable, "-c", "import os; print('uid', os.getuid())"],
    }
    with open(os.path.join(tmp, "task.json"), "w") as handle:
        json.dump(spec, handle)
    env = dict(os.environ, PYTHONPATH=PROJECT)
    argv = [sys.executable, "-m", "pipeline.compat.kfp_launcher", os.path.join(tmp, "task.json")]
    done = subprocess.run(
        argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60, **user
    )
    return done, pod


def test_a_launcher_mount_the_image_uid_cannot_write_fails_the_task(tmp_path):
    done, _ = _launch_as_image_user(str(tmp_path), writable=False)
    assert done.returncode == 1, done.stderr
    assert "permission denied" in done.stderr and "uid" not in done.stdout


def test_a_writable_launcher_mount_downloads_inputs_as_the_image_uid(tmp_path):
    done, pod = _launch_as_image_user(str(tmp_path), writable=True)
    assert done.returncode == 0, done.stderr
    uid = kfp_launcher.IMAGE_UID if os.geteuid() == 0 else os.geteuid()
    assert done.stdout.strip() == f"uid {uid}"
    downloaded = os.path.join(
        pod, "gcs", "bucket", "root", "p", "run", "ImportSchemaGen", "schema", "schema.pbtxt"
    )
    assert open(downloaded).read() == "feature {}\n" and os.stat(downloaded).st_uid == uid
    assert os.path.isdir(os.path.join(pod, "gcs", "bucket", "root", "p", "run", "StatisticsGen"))


def _package(tmp_path, parameters, default_root=None):
    spec = {
        "pipelineInfo": {"name": "p"},
        "sdkVersion": "tfx-1.16.0",
        "schemaVersion": "2.1.0",
        "root": {"dag": {"tasks": {}}, "inputDefinitions": {"parameters": parameters}},
        "components": {},
        "deploymentSpec": {"executors": {}},
    }
    if default_root:
        spec["defaultPipelineRoot"] = default_root
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.parametrize("root", ["minio://mlpipeline/v2/artifacts", "s3://b/r", "/local/dir"])
def test_roots_tfx_cannot_write_are_refused_in_one_line(root):
    with pytest.raises(dry_run.UnwritableRootError) as raised:
        dry_run.check_pipeline_root(root, "kfp")
    message = str(raised.value)
    assert raised.value.exit_code == 2 and "\n" not in message and "gs://" in message
    assert dry_run.check_pipeline_root("gs://bucket/root", "kfp") == "gs://bucket/root"


def test_without_a_root_the_driver_falls_back_to_minio_and_the_dry_run_refuses(tmp_path):
    """KFP's driver: the run's root, else the package's defaultPipelineRoot, else minio://."""
    bare = dry_run.DryRun(_package(tmp_path, {}), "kfp", str(tmp_path / "gcs"))
    assert bare.pipeline_root == dry_run.KFP_FALLBACK_ROOT
    with pytest.raises(dry_run.UnwritableRootError, match="no 'minio' scheme"):
        bare.check()
    compiled = dry_run.DryRun(
        _package(tmp_path, {}, "gs://bucket/root/pipelines/p"), "kfp", str(tmp_path / "gcs")
    )
    compiled.check()
    assert compiled.pipeline_root == "gs://bucket/root/pipelines/p"


def test_cli_refuses_a_minio_root_with_one_line(tmp_path):
    stderr = console_script.dry_run_error(
        _package(tmp_path, {}), dry_run.KFP_FALLBACK_ROOT, tmp_path / "gcs", timeout=120
    )
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: pipeline root 'minio://")


def test_a_parameter_without_value_or_default_stops_the_run_as_kfps_driver_does(tmp_path):
    bare = {"tree_fingerprint": {"parameterType": "STRING"}}  # as TFX compiles a RuntimeParameter
    run = dry_run.DryRun(
        _package(tmp_path, bare, "gs://b/r"),
        "kfp",
        str(tmp_path / "gcs"),
        run_as=None,
        fill_tree_fingerprint=False,
    )
    driver_says = "parent DAG does not have input parameter tree_fingerprint"
    with pytest.raises(dry_run.DryRunError, match=driver_says):
        run.run(str(tmp_path / "work"))
    with_default = {
        "tree_fingerprint": {"parameterType": "STRING", "defaultValue": "", "isOptional": True}
    }
    result = dry_run.DryRun(
        _package(tmp_path, with_default, "gs://b/r"),
        "kfp",
        str(tmp_path / "gcs"),
        run_as=None,
        fill_tree_fingerprint=False,
    ).run(str(tmp_path / "work2"))
    assert result["tasks"] == []


def test_the_projects_executors_write_no_markers_on_object_stores(monkeypatch, tmp_path):
    from components import folders

    made = []
    gfile = types.SimpleNamespace(makedirs=made.append)
    fake_tf = types.SimpleNamespace(io=types.SimpleNamespace(gfile=gfile))
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    folders.make_folder("gs://bucket/root/ImageExampleGen/examples/Split-train")
    folders.make_folder("s3://bucket/root/x")
    assert made == []  # TF's GCS file system would have written marker objects
    folders.make_folder(str(tmp_path / "local"))
    assert made == [str(tmp_path / "local")]
