"""The end-of-run summary of every variant: what went in, how it was split, how the model
did, where it went, its warnings and (mammography) its heat map.

`breastdx demo` and `breastdx summary` call `summarize()` after a local run, print
`render()` of it and exit with `exit_status()`. For the classify and segment variants it
reads the newest artifacts from the run's ML Metadata store, counts patients per split in
ImageExampleGen's output, and scores the held-out **test** split with the pushed
SavedModel's `serving_examples` signature (metrics in NumPy, independent of TFMA, with a
patient-level bootstrap CI); the result is also saved as JSON. For the mammography variant
it reads the pushed model's card (completed by the EvaluationReport component) and writes
the pushed model's heat map of one held-out mammogram.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from breastdx_core import contract, metrics, model_card
from breastdx_core.configs import PipelineConfig
from components.evaluation import scoring
from components.image_ingest import report as ingest_report
from pipeline.pipeline import EXAMPLE_GEN_ID

SUMMARY_FILE = "run_summary.json"


def _latest(store: metadata_store.MetadataStore, type_name: str) -> Any | None:
    try:
        artifacts = store.get_artifacts_by_type(type_name)
    except Exception:  # the type is unknown until a run has produced one
        return None
    artifacts = [a for a in artifacts if a.state == a.LIVE] or artifacts
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def _prop(artifact: Any, name: str) -> Any:
    if artifact is None or name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return value.WhichOneof("value") and getattr(value, value.WhichOneof("value"))


def split_records(examples_uri: str, split: str) -> list[str]:
    return scoring.split_records(examples_uri, split)


def split_counts(
    examples_uri: str, splits: list[str], num_classes: int
) -> dict[str, dict[str, Any]]:
    """Images per class and patients per split, from ImageExampleGen's output."""
    spec = {
        contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        contract.PATIENT_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    result = {}
    for split in splits:
        labels = collections.Counter()
        patients = set()
        dataset = tf.data.TFRecordDataset(
            split_records(examples_uri, split), compression_type="GZIP"
        )
        for batch in (
            dataset.batch(512).map(lambda x: tf.io.parse_example(x, spec)).as_numpy_iterator()
        ):
            labels.update(batch[contract.LABEL_KEY].tolist())
            patients.update(batch[contract.PATIENT_KEY].tolist())
        result[split] = {
            "images": sum(labels.values()),
            "patients": len(patients),
            "per_class": [labels.get(i, 0) for i in range(num_classes)],
        }
    return result


def score_split(
    model_dir: str, examples_uri: str, split: str, positive_index: int
) -> dict[str, Any]:
    """The exported model's metrics on a split (components.evaluation.scoring, the one scoring
    function) with n, a patient-bootstrap CI and the small-sample warnings."""
    scores = scoring.score_split(model_dir, examples_uri, split)
    y, s, groups = scores.binary(positive_index)
    result = metrics.binary_metrics(y, s)
    result["n_images"] = int(len(y))
    result["n_patients"] = int(len(np.unique(groups)))
    result["auc_ci95_patient_bootstrap"] = metrics.patient_bootstrap(y, s, groups)
    result["small_sample_warnings"] = model_card.small_sample_warnings(
        result["n_patients"],
        [int(np.sum(y == 0)), int(np.sum(y == 1))],
        ["negative", "positive"],
        split,
    )
    return result


def _previous_test_metrics(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            return json.load(handle).get("test_metrics") or {}
    except (OSError, ValueError):
        return {}


def newest_pushed(config: PipelineConfig) -> str | None:
    """The newest version folder under ``<serving_root>/<model_name>`` (None: nothing pushed)."""
    from components.baseline_evaluator import newest_version

    return newest_version(os.path.join(config.serving_root, config.model_name))


def summarize(config: PipelineConfig) -> dict[str, Any]:
    """Collects the newest run's facts (see the module docstring); saves them as JSON."""
    if config.variant == "mammo":
        return summarize_mammo(config)
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    )
    task = config.task_spec
    summary: dict[str, Any] = {
        "pipeline": config.pipeline_name,
        "task": task.name,
        "class_names": list(task.class_names),
        "data_root": config.data_root,
    }

    # ImageExampleGen's output (not Transform's): its splits, and the ingest report beside them.
    candidates = [
        a for a in store.get_artifacts_by_type("Examples") if f"/{EXAMPLE_GEN_ID}/" in a.uri
    ]
    examples_uri = max(candidates, key=lambda a: a.id).uri if candidates else None
    if examples_uri and tf.io.gfile.exists(os.path.join(examples_uri, ingest_report.REPORT_JSON)):
        with tf.io.gfile.GFile(os.path.join(examples_uri, ingest_report.REPORT_JSON)) as handle:
            report = json.load(handle)
        summary["ingest"] = {
            k: report[k]
            for k in (
                "entries",
                "ingested",
                "skipped",
                "skipped_by_reason",
                "ingested_by_class",
                "patients",
            )
        }
        summary["ingest"]["report"] = os.path.join(examples_uri, ingest_report.REPORT_MD)
        summary["ingest"]["duplicates"] = report.get("duplicates") or {}
        summary["ingest"]["class_warnings"] = report.get("class_warnings") or []
        summary["ingest"]["split_notes"] = report.get("split_notes") or []
    if examples_uri:
        summary["splits"] = split_counts(
            examples_uri, [name for name, _ in config.data.split_buckets], task.num_classes
        )

    blessing = _latest(store, "ModelBlessing")
    summary["blessed"] = bool(_prop(blessing, "blessed")) if blessing is not None else None
    pushed = _latest(store, "PushedModel")
    destination = (
        _prop(pushed, "pushed_destination")
        if pushed is not None and _prop(pushed, "pushed")
        else None
    )
    summary["pushed_model"] = destination
    card_path = os.path.join(destination, contract.MODEL_CARD_RELPATH) if destination else None
    if card_path and tf.io.gfile.exists(card_path):
        with tf.io.gfile.GFile(card_path) as handle:
            card = model_card.loads(handle.read())
        summary["eval_metrics"] = (card.get("evaluation") or {}).get("metrics")
        summary["decision_rule"] = model_card.decision_rule(card)
        summary["card_warnings"] = card.get("small_sample_warnings") or []
        report = card.get("evaluation_report") or {}
        if report.get("html"):
            summary["evaluation_report"] = os.path.join(destination, report["html"])
    model = _latest(store, "Model")
    model_dir = destination or (
        os.path.join(model.uri, "Format-Serving") if model is not None else None
    )
    trained_card = os.path.join(model_dir, contract.MODEL_CARD_RELPATH) if model_dir else None
    if trained_card and tf.io.gfile.exists(
        trained_card
    ):  # which backbone and weights it started from
        with tf.io.gfile.GFile(trained_card) as handle:
            trained = json.loads(handle.read())
        summary["backbone"] = trained.get("backbone")
        summary["weights_provenance"] = trained.get("weights_provenance")
        summary["training_budget"] = trained.get("training_budget")  # images the model saw
        summary["calibration"] = trained.get("calibration")
    out_dir = os.path.join(config.workdir, "reports", config.pipeline_name)
    os.makedirs(out_dir, exist_ok=True)
    summary["summary_file"] = os.path.join(out_dir, SUMMARY_FILE)
    # The U-Net variant is no classifier (no probabilities to score): its card carries the
    # Trainer's segmentation metrics, which render() shows instead of a test AUC.
    if (
        config.variant != "segment"
        and model_dir
        and examples_uri
        and split_records(examples_uri, "test")
    ):
        previous = _previous_test_metrics(summary["summary_file"])
        if previous.get("scored_model") == model_dir and previous.get("examples") == examples_uri:
            summary["test_metrics"] = previous  # same model, same split: a cached run's numbers
        else:
            summary["test_metrics"] = score_split(
                model_dir, examples_uri, "test", task.positive_index
            )
            summary["test_metrics"].update(scored_model=model_dir, examples=examples_uri)
    summary["synthetic_data"] = config.synthetic_data

    with open(summary["summary_file"], "w") as handle:
        json.dump(summary, handle, indent=1, default=str)
    return summary


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def weights_text(backbone: str | None, provenance: dict[str, Any] | None) -> str:
    """ "efficientnet_lite0 from ImageNet-pretrained weights (package==version, sha256 …)"
    or "... from random weights": what the model started from."""
    provenance = provenance or {}
    source = provenance.get("source")
    if source == "package":
        return (
            f"{backbone} from ImageNet-pretrained weights ({provenance.get('package')}=="
            f"{provenance.get('package_version')}, converted file sha256 {str(provenance.get('sha256'))[:12]}...)"
        )
    if source == "random":
        return f"{backbone} from random weights (no pretraining)"
    if source:
        return f"{backbone} from {source} weights {provenance.get('file') or ''}".rstrip()
    return str(backbone)


def segmentation_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The U-Net card's eval metrics (components/segmentation: Dice, Jaccard, TPR, FPR per
    image; the black-box area classifier) as summary rows."""
    rows = []
    for key, label in (
        ("segmentation", "eval (U-Net)"),
        ("segmentation_lesion_images", "eval, lesions only"),
    ):
        seg = metrics.get(key)
        if seg:
            rows.append(
                (
                    label,
                    ", ".join(
                        f"{k} {_fmt(float(seg[k]))}"
                        for k in ("dice", "jaccard", "tpr", "fpr")
                        if k in seg
                    )
                    + f", n={int(seg.get('n_images', 0))} images",
                )
            )
    area = metrics.get("area_classifier")
    if area:
        rows.append(
            (
                "area classifier",
                f"{area.get('positive_class')} where mask area > "
                f"{_fmt(float(area['area_threshold']))}: AUC {_fmt(float(area['auc']))}, "
                f"sensitivity {_fmt(float(area['sensitivity']))}, specificity "
                f"{_fmt(float(area['specificity']))}, n={int(area.get('n_images', 0))}",
            )
        )
    return rows


def render(summary: dict[str, Any]) -> str:
    """The summary as a short plain-text table."""
    if summary.get("variant") == "mammo":
        return render_mammo(summary)
    names = summary["class_names"]
    rows = [("pipeline", summary["pipeline"])]
    if summary.get("backbone"):
        rows.append(("model", weights_text(summary["backbone"], summary.get("weights_provenance"))))
    ingest = summary.get("ingest")
    if ingest:
        reasons = ", ".join(f"{k} {v}" for k, v in ingest["skipped_by_reason"].items()) or "none"
        rows += [
            (
                "files",
                f"{ingest['entries']} = {ingest['ingested']} ingested + {ingest['skipped']} skipped "
                f"({reasons})",
            ),
            ("ingest report", ingest["report"]),
        ]
        rows += [
            ("duplicates", line.strip())
            for line in ingest_report.duplicate_lines(ingest.get("duplicates"), 5)
        ]
        rows += [("data warning", line) for line in ingest.get("class_warnings") or []]
        rows += [("splits", line) for line in ingest.get("split_notes") or []]
    budget = summary.get("training_budget")
    if budget:
        rows.append(
            (
                "training",
                f"saw {budget['images_seen']} images: {budget['epochs_trained']} of "
                f"{budget['epochs']} epochs x {budget['steps_per_epoch']} steps x batch "
                f"{budget['batch_size']} ({budget['basis']}; stopped by {budget['stopped_by']}) "
                f"over {budget['train_images']} train images; validated on {budget['validation']}",
            )
        )
    calibrated = summary.get("calibration")
    if calibrated and calibrated.get("method") == "temperature":
        rows.append(
            (
                "calibration",
                f"temperature {calibrated['temperature']:.2f} fitted on {calibrated['n']} eval "
                f"images: ECE {_fmt(calibrated['ece_before'])} -> {_fmt(calibrated['ece_after'])}",
            )
        )
    for split, counts in summary.get("splits", {}).items():
        per_class = ", ".join(f"{n} {c}" for n, c in zip(names, counts["per_class"]))
        rows.append(
            (
                f"split {split}",
                f"{counts['patients']} patients, {counts['images']} images ({per_class})",
            )
        )
    eval_metrics = summary.get("eval_metrics") or {}
    if eval_metrics.get("segmentation"):
        rows += segmentation_rows(eval_metrics)
    elif eval_metrics:
        picked = {
            k: eval_metrics[k]
            for k in ("auc", "binary_accuracy", "precision", "recall", "example_count")
            if k in eval_metrics
        }
        rows.append(("eval (TFMA)", ", ".join(f"{k} {_fmt(v)}" for k, v in picked.items())))
    test = summary.get("test_metrics")
    if test:
        ci = test.get("auc_ci95_patient_bootstrap")
        ci_text = f" [95% CI {ci['low']:.3f}-{ci['high']:.3f}, patient bootstrap]" if ci else ""
        rows.append(
            (
                "test AUC",
                f"{_fmt(test['auc'])}{ci_text}, n={test['n_images']} images / "
                f"{test['n_patients']} patients",
            )
        )
        rows.append(
            (
                "test @0.5",
                f"accuracy {_fmt(test['accuracy'])}, sensitivity {_fmt(test['sensitivity'])}, "
                f"specificity {_fmt(test['specificity'])}",
            )
        )
    rule = summary.get("decision_rule")
    if rule:
        conformal, ood = rule.get("conformal") or {}, rule.get("ood") or {}
        covered = conformal.get("test_coverage") or {}
        ci = covered.get("ci95")
        claim = (
            f"conformal sets at {conformal.get('coverage', 0):.0%}: test coverage {_fmt(covered.get('value'))}"
            + (f" [95% CI {ci['low']:.3f}-{ci['high']:.3f}]" if ci else "")
            + f", n={covered.get('n')}"
            if rule.get("kind") == "conformal"
            else f"coverage NOT claimed ({conformal.get('reason')})"
        )
        rows.append(("decision rule", claim))
        alarm = ood.get("test_false_alarm") or {}
        rows.append(
            (
                "OOD check",
                f"threshold {_fmt(ood.get('threshold'))} (set on eval for "
                f"{ood.get('false_alarm_rate', 0):.0%} false alarms), test false alarms "
                f"{_fmt(alarm.get('value'))}",
            )
        )
    if summary.get("evaluation_report"):
        rows.append(("evaluation report", summary["evaluation_report"]))
    rows.append(
        (
            "blessed",
            {True: "yes", False: "NO (below the threshold: not pushed)", None: "n/a"}[
                summary["blessed"]
            ],
        )
    )
    rows.append(("pushed model", summary.get("pushed_model") or "none"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    warnings = list(summary.get("card_warnings") or []) + list(
        (test or {}).get("small_sample_warnings") or []
    )
    for warning in dict.fromkeys(
        warnings
    ):  # the card's and the summary's test split can say the same
        lines.append(f"WARNING: {warning}")
    if summary.get("synthetic_data"):
        lines.append(
            "Metrics on SYNTHETIC data: they show the pipeline works, not how a model does on tissue."
        )
    lines.append(contract.RESEARCH_ONLY)
    return "\n".join(lines)


def exit_status(summary: dict[str, Any]) -> int:
    """1 when a mammography run pushed nothing (its whole-image model was not blessed), else 0."""
    return 1 if summary.get("variant") == "mammo" and summary.get("pushed_model") is None else 0


# --- the mammography variant ---------------------------------------------------------------
def summarize_mammo(config: PipelineConfig) -> dict[str, Any]:
    """The pushed whole-image model's card and its heat map of the first held-out mammogram."""
    version_dir = newest_pushed(config)
    summary: dict[str, Any] = {
        "variant": "mammo",
        "pipeline": config.pipeline_name,
        "pushed_model": version_dir,
        "min_whole_auc": config.mammography.min_whole_auc,
    }
    if version_dir is not None:
        card = model_card.load(model_card.path_in(version_dir))
        summary["card"] = card
        summary["heatmap"] = write_heatmap(config, version_dir, card)
    return summary


def write_heatmap(config: PipelineConfig, version_dir: str, card: dict[str, Any]) -> str | None:
    """Calls the pushed model's heat-map signature on the first mammogram of the release's
    test split and saves the malignancy overlay under ``<workdir>/cbis/``; returns the PNG's
    path (None when the release has no test mammogram)."""
    from components.mammo import cbis, heatmap, images, records

    abnormalities, _ = cbis.read_release(config.data_root)
    tests = [m for m in cbis.mammograms(abnormalities) if m.split == "test"]
    if not tests:
        return None
    with open(tests[0].image_path, "rb") as handle:
        encoded = handle.read()
    model = tf.saved_model.load(version_dir)
    signature = card["input_contract"]["heatmap_signature"]
    grid = model.signatures[signature](**{contract.SERVING_INPUT_BYTES: tf.constant([encoded])})
    grid = grid[records.OUTPUT_HEATMAP].numpy()[0]
    size, patch, stride = card["image_size"], int(card["patch_size"]), int(card["heatmap_stride"])
    image = images.resize_keep_aspect(images.read_image(tests[0].image_path), size).numpy()
    rows, cols = np.arange(grid.shape[0]) * stride, np.arange(grid.shape[1]) * stride
    score = heatmap.malignant_map(heatmap.to_image_grid(grid, rows, cols, patch, image.shape))
    path = os.path.join(config.workdir, "cbis", f"heatmap_{tests[0].image_id}.png")
    images.save_png(path, heatmap.render_overlay(image, score * (image > 0.1)))
    np.save(path[:-4] + ".npy", grid)
    return path


def _ci_text(metric: dict[str, Any] | None) -> str:
    """ "0.812 [0.700-0.900], n=40" from a report metric ({value, n, ci95}); "n/a" without a value."""
    metric = metric or {}
    value, ci = metric.get("value"), metric.get("ci95") or {}
    if value is None:
        return f"n/a (n={metric.get('n')})"
    both = ci.get("low") is not None and ci.get("high") is not None
    interval = f" [{ci['low']:.3f}-{ci['high']:.3f}]" if both else " [CI n/a]"
    return f"{value:.3f}{interval}, n={metric.get('n')}"


def render_mammo(summary: dict[str, Any]) -> str:
    """The mammography run's lines: patch and whole-image models, the held-out test split,
    the decision rule, warnings, where the model, report and heat map are."""
    version_dir = summary.get("pushed_model")
    if version_dir is None:
        return (
            f"not pushed: the whole-image model did not reach the Evaluator's AUC floor "
            f"({summary['min_whole_auc']}); see the log"
        )
    card = summary["card"]
    evaluation = card.get("evaluation", {})
    whole, test = evaluation.get("metrics", {}), evaluation.get("test") or {}
    patch = card.get("patch_model", {}).get("evaluation", {}).get("metrics", {})
    rule = card.get("decision_rule") or {}
    operating = test.get("at_operating") or {}
    threshold = rule.get("operating_threshold")
    why = (
        "coverage claimed"
        if rule.get("kind") == "conformal"
        else (rule.get("conformal") or {}).get("reason")
    )
    lines = [
        f"backbone       {weights_text(card.get('backbone'), card.get('weights_provenance'))}",
        f"patch model    eval accuracy {patch.get('accuracy')} (5 classes, n={patch.get('n')}), "
        f"malignant AUC {patch.get('malignant_auc')}",
        f"whole image    eval AUC {whole.get('auc')} (Evaluator, n={evaluation.get('n_images')} "
        f"mammograms, {evaluation.get('n_patients')} patients held out of the release's train split)",
        f"held-out test  AUC {_ci_text(test.get('auc'))} mammograms, {test.get('n_patients')} "
        f"patients (the release's test split; 95% CI by patient bootstrap)",
        f"               at the operating threshold "
        f"{'n/a' if threshold is None else f'{threshold:.4g}'} (chosen on eval): "
        f"sensitivity {_ci_text(operating.get('sensitivity'))}, "
        f"specificity {_ci_text(operating.get('specificity'))}",
        f"decision rule  {rule.get('kind')} ({why})",
    ]
    lines += [f"warning        {warning}" for warning in card.get("small_sample_warnings") or []]
    lines.append(
        f"pushed         {version_dir} (signatures: serving_default, serving_examples, "
        f"{card['input_contract'].get('heatmap_signature')})"
    )
    report = (card.get("evaluation_report") or {}).get("html")
    if report:
        lines.append(f"report         {os.path.join(version_dir, report)}")
    if summary.get("heatmap"):
        lines.append(f"heatmap        {summary['heatmap']}")
    if evaluation.get("synthetic_data"):
        lines.append(
            "Metrics on SYNTHETIC data: they show the pipeline works, not how a model does on "
            "mammograms."
        )
    lines.append(contract.RESEARCH_ONLY)
    return "\n".join(lines)
