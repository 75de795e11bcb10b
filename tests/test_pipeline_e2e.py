"""The whole pipeline with LocalDagRunner on a small synthetic IDC set (slow: marked e2e)."""

import collections
import glob
import json
import os

import console_script
import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

import local_runner
from breastdx_core import contract
from components.image_ingest import report
from pipeline import summary, synthetic

pytestmark = pytest.mark.e2e


@pytest.fixture
def shared_tmp():
    """A folder under /tmp that another uid can traverse (pytest's base folder is mode 700)."""
    import shutil
    import tempfile
    from pathlib import Path

    path = tempfile.mkdtemp(prefix="breastdx-e2e-", dir="/tmp")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def run(idc_run):
    return (
        idc_run  # tests/conftest.py: one pipeline run per session, shared with test_decision_e2e.py
    )


def _store(config):
    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )


def test_pushed_model_in_tf_serving_layout_answers_png_bytes(run):
    config, data = run
    model_dir = os.path.join(config.serving_root, config.model_name)
    versions = os.listdir(model_dir)
    assert len(versions) == 1 and versions[0].isdigit()
    version_dir = os.path.join(model_dir, versions[0])
    assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
    model = tf.saved_model.load(version_dir)
    pngs = (
        sorted(glob.glob(os.path.join(data.root, "*", "1", "*.png")))[:2]
        + sorted(glob.glob(os.path.join(data.root, "*", "0", "*.png")))[-2:]
    )
    pngs = [p for p in pngs if os.path.getsize(p) > 0]
    raw = [open(p, "rb").read() for p in pngs]
    out = model.signatures[contract.SIGNATURE_BYTES](
        **{contract.SERVING_INPUT_BYTES: tf.constant(raw)}
    )
    probs = out[contract.OUTPUT_PROBABILITIES].numpy()
    assert probs.shape == (len(raw), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    names = [n.decode() for n in out[contract.OUTPUT_CLASS_NAME].numpy()]
    assert set(names) <= set(contract.get_task("idc").class_names)
    explained = model.signatures["explain"](**{contract.SERVING_INPUT_BYTES: tf.constant(raw[:1])})
    heatmap = explained["heatmap"].numpy()
    assert (
        heatmap.shape == (1, *contract.IDC_MODEL_SIZE) and 0 <= heatmap.min() and heatmap.max() <= 1
    )
    card = json.load(open(os.path.join(version_dir, contract.MODEL_CARD_RELPATH)))
    assert card["version"] == int(versions[0]) and card["class_names"] == list(
        contract.get_task("idc").class_names
    )
    assert {"auc", "binary_accuracy", "precision", "recall"} <= set(card["evaluation"]["metrics"])
    assert "not a diagnosis" in card["intended_use"]


def test_ingest_report_counts_every_file(run):
    config, data = run
    [examples] = glob.glob(os.path.join(config.pipeline_root, "ImageExampleGen", "examples", "*"))
    result = json.load(
        open(os.path.join(examples, report.REPORT_JSON))
    )  # inside the Examples artifact
    assert result["entries"] == data.files and result["ingested"] == data.images
    assert result["skipped_by_reason"]["corrupt"] == 1 and result["skipped_by_reason"]["empty"] == 1


def test_no_patient_crosses_splits(run):
    config, data = run
    [examples] = glob.glob(os.path.join(config.pipeline_root, "ImageExampleGen", "examples", "*"))
    spec = {contract.PATIENT_KEY: tf.io.FixedLenFeature([], tf.string)}
    where = collections.defaultdict(set)
    for split in ("train", "eval", "test"):
        files = glob.glob(os.path.join(examples, f"Split-{split}", "*"))
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            where[tf.io.parse_single_example(record, spec)[contract.PATIENT_KEY].numpy()].add(split)
    assert len(where) == data.patients
    assert all(len(s) == 1 for s in where.values())


def test_model_learns_and_summary_reports_it(run):
    config, _ = run
    facts = summary.summarize(config)
    assert facts["blessed"] is True
    assert facts["ingest"]["ingested"] > 0  # the report, read from ImageExampleGen's artifact
    assert facts["test_metrics"]["auc"] >= 0.9, facts["test_metrics"]
    assert facts["test_metrics"]["n_patients"] >= 2
    text = summary.render(facts)
    assert "test AUC" in text and "SYNTHETIC" in text and contract.RESEARCH_ONLY in text


def test_rerun_comes_from_the_cache(run):
    config, _ = run
    local_runner.run(config)
    executions = _store(config).get_executions()
    trainer_runs = [e for e in executions if e.type == "tfx.components.trainer.component.Trainer"]
    states = collections.Counter(e.last_known_state for e in trainer_runs)
    assert states[metadata_store_pb2.Execution.COMPLETE] == 1
    assert states[metadata_store_pb2.Execution.CACHED] == 1
    assert len(os.listdir(os.path.join(config.serving_root, config.model_name))) == 1


def test_cli_rejects_bad_data_before_the_pipeline(tmp_path):
    """The data check (what `local_runner.run` does first) names each bad root's problem
    before any pipeline state is written; the console script's one line and exit 2 for a
    wrong root: tests/test_cli_data_root.py."""
    from breastdx_core import configs
    from pipeline import preflight

    (tmp_path / "empty").mkdir()
    busi_like = tmp_path / "busi"
    synthetic.write_busi(str(busi_like), per_class=1)
    for root, message in (
        (tmp_path / "empty", "is empty"),
        (busi_like, "labels the task 'idc' does not know"),
    ):
        config = configs.load(env={}, data_root=str(root), workdir=str(tmp_path / "w"))
        with pytest.raises(preflight.PreflightError, match=message):
            local_runner.run(config)
        assert not os.path.exists(os.path.dirname(config.metadata_path))


def _answers_png(version_dir, data):
    model = tf.saved_model.load(version_dir)
    pngs = [
        p
        for p in sorted(glob.glob(os.path.join(data.root, "*", "*", "*.png")))[:3]
        if os.path.getsize(p) > 0
    ]
    out = model.signatures[contract.SIGNATURE_BYTES](
        **{contract.SERVING_INPUT_BYTES: tf.constant([open(p, "rb").read() for p in pngs])}
    )
    np.testing.assert_allclose(
        out[contract.OUTPUT_PROBABILITIES].numpy().sum(axis=1), 1.0, rtol=1e-5
    )


@pytest.mark.timeout(2400)  # a whole pipeline run, one process per task
def test_dry_run_of_the_kfp_package_ends_with_a_pushed_model(tmp_path, shared_tmp):
    """The KFP 2 package compiled with the cluster's defaults (one GPU, so the Trainer fits in
    MirroredStrategy, here over the CPU), task by task as KFP's driver and launcher run it
    (pipeline/compat/dry_run.py): artifacts through a store with GCS's semantics (directory marker
    objects included), every input downloaded blob by blob into the pod as the launcher does,
    each task as the image's uid with only the launcher's mounts and the bucket writable, the
    image's TFX shim installed, no run parameter passed (the compiled defaults stand). It ends
    with a pushed model in TF Serving's layout that answers PNG bytes."""
    import kubeflow_runner
    from breastdx_core import cluster_configs
    from pipeline.compat import dry_run, kfp_launcher

    root = "gs://dry-run-bucket/breastdx"
    cluster = cluster_configs.load(
        env={},
        engine="kfp",
        image="registry.example.invalid/breastdx:test",
        gcs_root=root,
        beam_direct_mode="in_memory",
    )  # multi-process costs minutes here
    assert (
        cluster.gpu_count == 1 and cluster.distribution_strategy == "mirrored"
    )  # the cluster's defaults
    # Small on purpose: the dry run proves the package runs task by task (each task its own
    # process, as in a pod), not that the model is good; the floor is lowered so it is pushed.
    config = kubeflow_runner.cluster_pipeline_config(
        cluster,
        env={},
        train_steps=4,
        eval_steps=2,
        seed=5,
        auc_lower_bound=0.0,
        auc_max_regression=1.0,
    )
    package = kubeflow_runner.compile_pipeline(config, cluster, str(tmp_path / "breastdx-idc.yaml"))
    tmp_path = shared_tmp  # the bucket and the pods: where the image's uid can reach them
    storage = dry_run.LocalStorage(str(tmp_path / "gcs"))
    data = synthetic.write_idc(
        storage.local(config.data_root), patients=20, patches_per_patient=10, seed=5
    )
    # No root and no parameter given: the package's defaultPipelineRoot and defaults stand.
    run = dry_run.DryRun(package, "kfp", storage.root, fill_tree_fingerprint=False)
    assert run.pipeline_root == config.pipeline_root and run.run_as == (
        (kfp_launcher.IMAGE_UID, kfp_launcher.IMAGE_GID) if os.geteuid() == 0 else None
    )
    result = run.run(str(tmp_path / "work"))
    assert [t["task"] for t in result["tasks"]][0] in ("ImageExampleGen", "ImportSchemaGen")
    assert {t["task"] for t in result["tasks"]} >= {
        "ImageExampleGen",
        "Trainer",
        "Evaluator",
        "Pusher",
    }
    serving = storage.local(f"{config.serving_root}/{config.model_name}")
    assert result["pushed"] and os.path.dirname(result["pushed"]) == serving, result
    assert os.path.exists(os.path.join(result["pushed"], "saved_model.pb"))
    if run.run_as:  # written by the image's uid
        assert (
            os.stat(os.path.join(result["pushed"], "saved_model.pb")).st_uid
            == kfp_launcher.IMAGE_UID
        )
    custom = run.spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"]["custom_config"]
    assert (
        json.loads(custom["runtimeValue"]["constant"])["runtime"]["distribution_strategy"]
        == "mirrored"
    )  # run_fn's
    # The tasks wrote directory markers (TF's GCS semantics) and shim fix 6 removed every one
    # under an artifact before its consumers' launchers downloaded it.
    written = [line for line in open(run.store.marker_log) if line.startswith("+")]
    assert any("/ImportSchemaGen/schema/" in line for line in written)
    assert not [
        m for m in run.store.markers() if "/ImportSchemaGen/schema/" in m or "/Trainer/model/" in m
    ]
    schema_input = glob.glob(
        os.path.join(
            result["logs"],
            "*",
            "pod",
            "gcs",
            "dry-run-bucket",
            "breastdx",
            "pipelines",
            "*",
            "*",
            "*",
            "ImportSchemaGen",
            "schema",
            "schema.pbtxt",
        )
    )
    assert schema_input, "no task downloaded the schema as KFP's launcher does"
    # KFP's launcher layout (shim fix 5): the Trainer's model sits flat in its artifact folder
    [model_uri] = glob.glob(
        os.path.join(
            storage.root,
            "dry-run-bucket",
            "breastdx",
            "pipelines",
            "*",
            "*",
            "*",
            "Trainer",
            "model",
        )
    )
    assert os.path.exists(os.path.join(model_uri, "saved_model.pb"))
    _answers_png(result["pushed"], data)
    # Without fix 6, the markers the schema's producer wrote break the next download
    schema_key = os.path.relpath(
        os.path.dirname(schema_input[0]), os.path.join(storage.root, "dry-run-bucket")
    )
    run.store._log(["+dry-run-bucket/" + schema_key + "/"])  # pylint: disable=protected-access
    with pytest.raises(kfp_launcher.LauncherError, match="not a directory"):
        kfp_launcher.download_blob(
            run.store, "dry-run-bucket", schema_key, str(tmp_path / "pod-without-fix")
        )


def test_dry_run_refuses_what_kfp_refuses(tmp_path):
    """A resolver executor in a KFP package: one line naming the fix, exit 2, nothing run."""
    import yaml

    spec = {
        "pipelineInfo": {"name": "p"},
        "root": {
            "dag": {
                "tasks": {"LatestBlessedModel": {"componentRef": {"name": "LatestBlessedModel"}}}
            }
        },
        "components": {"LatestBlessedModel": {"executorLabel": "LatestBlessedModel_executor"}},
        "deploymentSpec": {
            "executors": {
                "LatestBlessedModel_executor": {"resolver": {"outputArtifactQueries": {}}}
            }
        },
    }
    package = tmp_path / "p.yaml"
    package.write_text(yaml.safe_dump(spec))
    stderr = console_script.dry_run_error(package, "gs://b/root", tmp_path / "gcs")
    assert stderr.strip().splitlines() == [
        "error: kfp refuses LatestBlessedModel: resolver executors not implemented (KFP 2's argocompiler); "
        "recompile without it (1 such task(s))"
    ]
    assert not (tmp_path / "gcs").exists()
