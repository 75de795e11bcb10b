"""The evaluation report of a pushed model: honest numbers, written beside the model.

`breastdx report` (pipeline/lab/cli.py) calls `report_for_version()` for pushed
versions under ``<serving_root>/<model_name>/``. It scores the held-out **test** split
(and the **eval** split, where the thresholds are chosen, so the test numbers are not
tuned on themselves) with the exported model's ``serving_examples`` signature, and
writes ``<version>/assets.extra/evaluation_report.json`` and ``.html``. The model card
(``assets.extra/model_card.json``) gains ``operating_threshold``, ``uncertainty_band:
{low, high}`` (the web app shows predictions between them as "uncertain, refer to a
pathologist") and the report's path.

Every metric carries its n and a 95 % CI from a bootstrap over patients, not patches
(`pipeline.metrics.patient_bootstrap`). The pure functions below work on NumPy arrays
and are what the tests recompute.
"""
from __future__ import annotations

import base64
import glob
import html
import io
import json
import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from pipeline import contract, metrics

log = logging.getLogger(__name__)

REPORT_JSON = "assets.extra/evaluation_report.json"
REPORT_HTML = "assets.extra/evaluation_report.html"
CALIBRATION_BINS = 10
# A patient is positive when any of their patches is; their score is their most
# suspicious patch (the clinical question: "is there IDC anywhere in this patient?").
PATIENT_AGGREGATION = "max"
SYNTHETIC_NOTE = ("SYNTHETIC DATA: these metrics show the pipeline works end to end; they say nothing about "
                  "how a model does on real tissue.")


# --- thresholds --------------------------------------------------------------------------
def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold t with sensitivity(scores >= t) >= ``target``.

    Args:
        labels: [n] 0/1; scores: [n] float. NaN without positives.
    """
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    positives = np.sort(scores[labels])[::-1]
    if not len(positives):
        return float("nan")
    keep = int(math.ceil(target * len(positives) - 1e-9))  # positives that must score >= t
    return float(positives[max(keep, 1) - 1])


def threshold_for_specificity(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The lowest threshold t with specificity(scores >= t) >= ``target`` (t is just above
    the highest negative score that must be called negative). NaN without negatives."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    negatives = np.sort(scores[~labels])
    if not len(negatives):
        return float("nan")
    keep = int(math.ceil(target * len(negatives) - 1e-9))  # negatives that must score < t
    if keep <= 0:
        return float(negatives[0])
    return float(np.nextafter(negatives[keep - 1], np.inf))


def uncertainty_band(labels: np.ndarray, scores: np.ndarray, sensitivity: float,
                     specificity: float) -> Dict[str, float]:
    """{low, high}: below ``low`` a prediction is negative keeping ``sensitivity``; at or
    above ``high`` positive keeping ``specificity``; between them "uncertain". When the
    two cross the band is empty (low == high)."""
    low = threshold_for_sensitivity(labels, scores, sensitivity)
    high = threshold_for_specificity(labels, scores, specificity)
    if math.isfinite(low) and math.isfinite(high) and low > high:
        low = high = (low + high) / 2
    return {"low": low, "high": high, "sensitivity": sensitivity, "specificity": specificity}


# --- curves ------------------------------------------------------------------------------
def roc_curve(labels: np.ndarray, scores: np.ndarray) -> Dict[str, List[float]]:
    """False and true positive rates at every distinct score (descending thresholds)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(scores)[::-1]
    pos, neg = max(labels.sum(), 1), max((~labels).sum(), 1)
    tpr = [0.0] + [float(np.sum(labels & (scores >= t)) / pos) for t in thresholds]
    fpr = [0.0] + [float(np.sum(~labels & (scores >= t)) / neg) for t in thresholds]
    return {"fpr": fpr, "tpr": tpr, "thresholds": [float("inf")] + thresholds.tolist()}


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> Dict[str, List[float]]:
    """Precision and recall at every distinct score (descending thresholds)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(scores)[::-1]
    pos = max(labels.sum(), 1)
    precision, recall = [], []
    for t in thresholds:
        called = scores >= t
        precision.append(float(np.sum(labels & called) / max(called.sum(), 1)))
        recall.append(float(np.sum(labels & called) / pos))
    return {"precision": precision, "recall": recall, "thresholds": thresholds.tolist()}


def calibration(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> Dict[str, Any]:
    """Reliability in ``bins`` equal-width bins of [0, 1]: mean score, fraction positive,
    count per bin, and the expected calibration error (count-weighted |gap|)."""
    labels, scores = np.asarray(labels).astype(float), np.asarray(scores, dtype=np.float64)
    index = np.clip((scores * bins).astype(int), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        mean_score = float(scores[members].mean()) if n else None
        positive = float(labels[members].mean()) if n else None
        if n:
            ece += n / len(scores) * abs(mean_score - positive)
        rows.append({"bin": [b / bins, (b + 1) / bins], "n": n, "mean_score": mean_score,
                     "fraction_positive": positive})
    return {"bins": rows, "ece": float(ece)}


# --- metrics with CIs --------------------------------------------------------------------
def _at(name: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """The metric ``name`` of ``scores >= threshold``, from the confusion counts."""
    def fn(y: np.ndarray, s: np.ndarray) -> float:
        cm = metrics.confusion(y, s, threshold)
        num, den = {
            "accuracy": (cm["tp"] + cm["tn"], sum(cm.values())),
            "sensitivity": (cm["tp"], cm["tp"] + cm["fn"]),
            "specificity": (cm["tn"], cm["tn"] + cm["fp"]),
            "precision": (cm["tp"], cm["tp"] + cm["fp"]),
            "f1": (2 * cm["tp"], 2 * cm["tp"] + cm["fp"] + cm["fn"]),
        }[name]
        return num / den if den else float("nan")
    return fn


THRESHOLD_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1")


def metrics_with_ci(labels: np.ndarray, scores: np.ndarray, groups: Sequence[Any], threshold: float,
                    resamples: int = 1000, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """AUC and the threshold metrics, each {value, n, ci95: {low, high, resamples} or None}.

    ``n`` is what the metric is a fraction of: all images for accuracy and AUC,
    positives for sensitivity, negatives for specificity, predicted positives for
    precision, positives or predicted positives for F1. The CI resamples whole
    patients (``groups``).
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    cm = metrics.confusion(labels, scores, threshold)
    n_of = {"auc": len(labels), "accuracy": len(labels), "sensitivity": cm["tp"] + cm["fn"],
            "specificity": cm["tn"] + cm["fp"], "precision": cm["tp"] + cm["fp"],
            "f1": cm["tp"] + cm["fp"] + cm["fn"]}
    fns = {"auc": metrics.roc_auc, **{name: _at(name, threshold) for name in THRESHOLD_METRICS}}
    result = {}
    for name, fn in fns.items():
        value = fn(labels, scores)
        result[name] = {"value": value, "n": int(n_of[name]),
                        "ci95": metrics.patient_bootstrap(labels, scores, groups, metric=fn,
                                                          resamples=resamples, seed=seed)}
    return result


def patient_level(labels: np.ndarray, scores: np.ndarray, groups: Sequence[Any], threshold: float,
                  resamples: int = 1000, seed: int = 0) -> Dict[str, Any]:
    """One score per patient (their highest patch score; label: any positive patch), the
    patient metrics, and the tumour burden (fraction of positive patches) agreement."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    patients = np.unique(groups)
    p_label, p_score, true_burden, called_burden = [], [], [], []
    for patient in patients:
        members = groups == patient
        p_label.append(int(labels[members].max()))
        p_score.append(float(scores[members].max()))
        true_burden.append(float(labels[members].mean()))
        called_burden.append(float((scores[members] >= threshold).mean()))
    p_label, p_score = np.array(p_label), np.array(p_score)
    result: Dict[str, Any] = {
        "aggregation": f"patient score = {PATIENT_AGGREGATION} of patch scores; patient label = 1 if any patch is 1",
        "n_patients": int(len(patients)),
        "patients_per_class": [int((p_label == 0).sum()), int((p_label == 1).sum())],
        "confusion": metrics.confusion(p_label, p_score, threshold),
    }
    both = 0 < p_label.sum() < len(p_label)
    result["metrics"] = metrics_with_ci(p_label, p_score, patients, threshold, resamples, seed)
    if not both:
        result["note"] = (f"every patient in this split has label {int(p_label[0]) if len(p_label) else '-'}: "
                          "AUC and the rates of the other class are undefined (as in the IDC set, where every "
                          "patient has IDC somewhere); see the burden agreement instead")
    t_b, c_b = np.array(true_burden), np.array(called_burden)
    result["burden"] = {
        "definition": "fraction of a patient's patches that are positive: true vs called at the operating threshold",
        "mae": float(np.mean(np.abs(t_b - c_b))) if len(t_b) else float("nan"),
        "pearson_r": (float(np.corrcoef(t_b, c_b)[0, 1]) if len(t_b) > 1 and t_b.std() > 0 and c_b.std() > 0
                      else float("nan")),
        "per_patient": [{"patient": str(p.decode() if isinstance(p, bytes) else p), "true": t, "called": c}
                        for p, t, c in zip(patients, true_burden, called_burden)],
    }
    return result


def build_report(test: Tuple[np.ndarray, np.ndarray, np.ndarray], choose: Tuple[np.ndarray, np.ndarray, np.ndarray],
                 *, target_sensitivity: float = 0.95, band_sensitivity: float = 0.99,
                 band_specificity: float = 0.99, resamples: int = 1000, seed: int = 0,
                 card: Optional[Dict[str, Any]] = None, splits: Optional[Dict[str, Any]] = None,
                 synthetic: bool = False, class_names: Sequence[str] = ("negative", "positive")) -> Dict[str, Any]:
    """The report as a JSON-ready dict.

    Args:
        test: (labels 0/1 [n], positive scores [n], patient ids [n]) of the split reported on.
        choose: the same for the split the thresholds are chosen on (eval).
        target_sensitivity: the operating threshold keeps this sensitivity on ``choose``.
        band_sensitivity, band_specificity: the uncertainty band's two targets.
        card: the model card (training history, diagnostics, version).
        splits: images and patients per class and split.
        synthetic: the data are the embedded synthetic set.
    """
    y, s, g = (np.asarray(a) for a in test)
    cy, cs, _ = (np.asarray(a) for a in choose)
    operating = threshold_for_sensitivity(cy, cs, target_sensitivity)
    if not math.isfinite(operating):
        operating = 0.5
    band = uncertainty_band(cy, cs, band_sensitivity, band_specificity)
    in_band = (s >= band["low"]) & (s < band["high"]) if math.isfinite(band["low"]) else np.zeros(len(s), bool)
    card = card or {}
    report = {
        "title": f"Evaluation report: {card.get('model_name', 'model')} version {card.get('version', '?')}",
        "research_use": contract.RESEARCH_ONLY,
        "synthetic_data": bool(synthetic),
        "data_note": SYNTHETIC_NOTE if synthetic else "Metrics of the data set the pipeline ran on.",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {k: card.get(k) for k in ("model_name", "version", "backbone", "weights", "pipeline_run_id",
                                           "trained_model_uri", "hyperparameters", "parameters")},
        "class_names": list(class_names),
        "split": "test (patient-grouped, held out); thresholds chosen on eval",
        "n_images": int(len(y)), "n_patients": int(len(np.unique(g))),
        "bootstrap": {"unit": "patient", "resamples": resamples, "level": 0.95, "seed": seed},
        "thresholds": {
            "default": 0.5,
            "operating": {"value": operating, "target_sensitivity": target_sensitivity, "chosen_on": "eval"},
            "uncertainty_band": {"low": band["low"], "high": band["high"], "chosen_on": "eval",
                                 "low_keeps_sensitivity": band_sensitivity,
                                 "high_keeps_specificity": band_specificity,
                                 "test_fraction_in_band": float(in_band.mean()) if len(s) else float("nan")},
        },
        "image_level": {
            "at_0.5": metrics_with_ci(y, s, g, 0.5, resamples, seed),
            "at_operating": metrics_with_ci(y, s, g, operating, resamples, seed),
            "confusion_at_0.5": metrics.confusion(y, s, 0.5),
            "confusion_at_operating": metrics.confusion(y, s, operating),
        },
        "patient_level": patient_level(y, s, g, operating, resamples, seed),
        "curves": {"roc": roc_curve(y, s), "pr": pr_curve(y, s)},
        "calibration": calibration(y, s),
        "splits": splits or {},
        "training_history": card.get("training_history", {}),
        "training_diagnostics": card.get("training_diagnostics"),
    }
    return report


# --- scoring a pushed model ------------------------------------------------------------
def score_examples(model_dir: str, examples_uri: str, split: str, positive_index: int,
                   limit: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels 0/1, positive scores, patient ids) of ImportExampleGen's ``split`` (its first
    ``limit`` records if given), scored by the SavedModel's ``serving_examples``
    signature (the Transform graph inside)."""
    import tensorflow as tf

    from pipeline.summary import split_records

    model = tf.saved_model.load(model_dir)
    serve = model.signatures[contract.SIGNATURE_EXAMPLES]
    spec = {contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
            contract.PATIENT_KEY: tf.io.FixedLenFeature([], tf.string)}
    labels, scores, patients = [], [], []
    records = tf.data.TFRecordDataset(split_records(examples_uri, split), compression_type="GZIP")
    if limit:
        records = records.take(limit)
    for batch in records.batch(128):
        parsed = tf.io.parse_example(batch, spec)
        labels.append(parsed[contract.LABEL_KEY].numpy())
        patients.append(parsed[contract.PATIENT_KEY].numpy())
        scores.append(serve(**{contract.SERVING_INPUT_EXAMPLES: batch})[contract.OUTPUT_POSITIVE].numpy())
    if not labels:
        raise ValueError(f"no records in split {split!r} of {examples_uri}")
    return ((np.concatenate(labels) == positive_index).astype(int), np.concatenate(scores),
            np.concatenate(patients))


# --- rendering ---------------------------------------------------------------------------
def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figures(report: Dict[str, Any]) -> Dict[str, str]:
    """{name: base64 PNG}: ROC, PR, calibration, confusion matrix, training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    roc, pr = report["curves"]["roc"], report["curves"]["pr"]
    auc = report["image_level"]["at_0.5"]["auc"]["value"]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(roc["fpr"], roc["tpr"], label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (test, images)")
    ax.legend(loc="lower right")
    out["roc"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(pr["recall"], pr["precision"])
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)", ylim=(0, 1.02))
    out["pr"] = _png(fig)

    fig, ax = plt.subplots(figsize=(4, 4))
    bins = [b for b in report["calibration"]["bins"] if b["n"]]
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot([b["mean_score"] for b in bins], [b["fraction_positive"] for b in bins], "o-")
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive",
           title=f"Calibration (ECE {report['calibration']['ece']:.3f})")
    out["calibration"] = _png(fig)

    cm = report["image_level"]["confusion_at_operating"]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, str(v), ha="center", va="center")
    names = report["class_names"]
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names[:1] + names[-1:], yticklabels=names[:1] + names[-1:],
           xlabel="predicted", ylabel="true",
           title=f"Confusion @ {report['thresholds']['operating']['value']:.3f}")
    out["confusion"] = _png(fig)

    history = report.get("training_history") or {}
    if history.get("loss"):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        epochs = range(1, len(history["loss"]) + 1)
        for key in ("loss", "val_loss"):
            if key in history:
                axes[0].plot(epochs, history[key], "o-", label=key)
        for key in ("sparse_categorical_accuracy", "val_sparse_categorical_accuracy"):
            if key in history:
                axes[1].plot(epochs, history[key], "o-", label=key.replace("sparse_categorical_", ""))
        axes[0].set(xlabel="epoch", title="loss")
        axes[1].set(xlabel="epoch", title="accuracy")
        for ax in axes:
            ax.legend()
        out["training"] = _png(fig)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def _metric_rows(block: Dict[str, Dict[str, Any]]) -> str:
    rows = []
    for name, m in block.items():
        ci = m["ci95"]
        ci_text = f"{_fmt(ci['low'])} - {_fmt(ci['high'])}" if ci else "n/a"
        rows.append(f"<tr><td>{name}</td><td>{_fmt(m['value'])}</td><td>{ci_text}</td><td>{m['n']}</td></tr>")
    return "".join(rows)


def render_html(report: Dict[str, Any], images: Dict[str, str]) -> str:
    """A self-contained HTML page (figures embedded as data URIs)."""
    def img(name: str) -> str:
        return f'<img alt="{name}" src="data:image/png;base64,{images[name]}">' if name in images else ""

    head = "<tr><th>metric</th><th>value</th><th>95% CI (patient bootstrap)</th><th>n</th></tr>"
    t = report["thresholds"]
    banner = (f'<p class="warn">{html.escape(report["data_note"])}</p>' if report["synthetic_data"]
              else f"<p>{html.escape(report['data_note'])}</p>")
    splits = "".join(
        f"<tr><td>{name}</td><td>{c['patients']}</td><td>{c['images']}</td><td>"
        + ", ".join(f"{n} {k}" for n, k in zip(report["class_names"], c["per_class"])) + "</td></tr>"
        for name, c in report["splits"].items())
    patient = report["patient_level"]
    diag = report.get("training_diagnostics") or {}
    diag_rows = "".join(
        f"<tr><td>{name}</td><td>{'FIRED' if r.get('triggered') else 'quiet'}</td>"
        f"<td>{html.escape(r.get('detail', '') or json.dumps({k: v for k, v in r.items() if k not in ('triggered', 'losses', 'gaps')}, default=str)[:300])}</td></tr>"
        for name, r in (diag.get("rules") or {}).items())
    model = report["model"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(report['title'])}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:90%}}.warn{{background:#fff3cd;padding:.6em;border:1px solid #e0c060}}
.ruo{{background:#f8d7da;padding:.6em;border:1px solid #d08080;font-weight:bold}}img{{margin:4px}}</style></head><body>
<h1>{html.escape(report['title'])}</h1>
<p class="ruo">{html.escape(report['research_use'])}</p>
{banner}
<p>Backbone <b>{_fmt(model.get('backbone'))}</b>, weights {_fmt(model.get('weights'))}; split: {html.escape(report['split'])};
n = {report['n_images']} images of {report['n_patients']} patients. CIs: {report['bootstrap']['resamples']} bootstrap
resamples over patients, not patches.</p>
<h2>Thresholds (chosen on the eval split)</h2>
<table><tr><th>threshold</th><th>value</th><th>meaning</th></tr>
<tr><td>operating</td><td>{_fmt(t['operating']['value'])}</td><td>highest threshold keeping sensitivity &ge; {t['operating']['target_sensitivity']:.0%} on eval</td></tr>
<tr><td>uncertainty band low</td><td>{_fmt(t['uncertainty_band']['low'])}</td><td>below: negative (keeps sensitivity &ge; {t['uncertainty_band']['low_keeps_sensitivity']:.0%})</td></tr>
<tr><td>uncertainty band high</td><td>{_fmt(t['uncertainty_band']['high'])}</td><td>at or above: positive (keeps specificity &ge; {t['uncertainty_band']['high_keeps_specificity']:.0%}); between: "uncertain, refer to a pathologist" ({_fmt(t['uncertainty_band']['test_fraction_in_band'])} of test images)</td></tr></table>
<h2>Image-level metrics at the operating threshold</h2><table>{head}{_metric_rows(report['image_level']['at_operating'])}</table>
<h2>Image-level metrics at 0.5</h2><table>{head}{_metric_rows(report['image_level']['at_0.5'])}</table>
<h2>Patient-level metrics</h2><p>{html.escape(patient['aggregation'])}; {patient['n_patients']} patients
({patient['patients_per_class'][0]} negative, {patient['patients_per_class'][1]} positive).
{html.escape(patient.get('note', ''))}</p><table>{head}{_metric_rows(patient['metrics'])}</table>
<p>Tumour burden (fraction of positive patches per patient), true vs called: MAE {_fmt(patient['burden']['mae'])},
Pearson r {_fmt(patient['burden']['pearson_r'])}.</p>
<h2>Curves</h2>{img('confusion')}{img('roc')}{img('pr')}{img('calibration')}
<h2>Splits</h2><table><tr><th>split</th><th>patients</th><th>images</th><th>per class</th></tr>{splits}</table>
<h2>Training</h2>{img('training')}
<h3>Training diagnostics</h3><table><tr><th>rule</th><th>state</th><th>numbers</th></tr>{diag_rows}</table>
<p class="ruo">{html.escape(report['research_use'])}</p></body></html>"""


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def write_report(version_dir: str, report: Dict[str, Any]) -> Dict[str, str]:
    """Writes the JSON and HTML beside the model and adds the thresholds to its card."""
    import tensorflow as tf

    paths = {"json": os.path.join(version_dir, REPORT_JSON), "html": os.path.join(version_dir, REPORT_HTML)}
    tf.io.gfile.makedirs(os.path.dirname(paths["json"]))
    with tf.io.gfile.GFile(paths["json"], "w") as handle:
        json.dump(_finite(report), handle, indent=1)
    with tf.io.gfile.GFile(paths["html"], "w") as handle:
        handle.write(render_html(report, figures(report)))
    card_path = os.path.join(version_dir, contract.MODEL_CARD_RELPATH)
    card: Dict[str, Any] = {}
    if tf.io.gfile.exists(card_path):
        with tf.io.gfile.GFile(card_path) as handle:
            card = json.load(handle)
    band = report["thresholds"]["uncertainty_band"]
    card.update(_finite({
        "operating_threshold": report["thresholds"]["operating"],
        "uncertainty_band": {"low": band["low"], "high": band["high"]},
        "evaluation_report": {"json": REPORT_JSON, "html": REPORT_HTML, "split": report["split"],
                              "synthetic_data": report["synthetic_data"],
                              "test_auc": report["image_level"]["at_0.5"]["auc"]}}))
    with tf.io.gfile.GFile(card_path, "w") as handle:
        json.dump(card, handle, indent=1)
    return paths


def pushed_versions(config) -> List[str]:
    """Version folders under ``<serving_root>/<model_name>/``, oldest first."""
    base = os.path.join(config.serving_root, config.model_name)
    return sorted((d for d in glob.glob(os.path.join(base, "*")) if os.path.basename(d).isdigit()),
                  key=lambda d: int(os.path.basename(d)))


def report_for_version(config, version_dir: str, examples_uri: str) -> Dict[str, str]:
    """Scores ``version_dir`` on the test and eval splits of ``examples_uri`` and writes its
    report (see the module docstring). Returns the written paths."""
    import tensorflow as tf

    from pipeline import summary

    task = config.task_spec
    card_path = os.path.join(version_dir, contract.MODEL_CARD_RELPATH)
    card = {}
    if tf.io.gfile.exists(card_path):
        with tf.io.gfile.GFile(card_path) as handle:
            card = json.load(handle)
    card.setdefault("version", int(os.path.basename(version_dir.rstrip("/"))))
    card.setdefault("model_name", config.model_name)
    if task.num_classes != 2:
        log.info("%s: %d classes; the report scores %s vs the rest", version_dir, task.num_classes,
                 task.positive_class)
    test = score_examples(version_dir, examples_uri, "test", task.positive_index)
    choose = score_examples(version_dir, examples_uri, "eval", task.positive_index)
    synthetic = os.path.abspath(config.data_root).startswith(os.path.abspath(config.workdir))
    splits = summary.split_counts(examples_uri, [name for name, _ in config.split_buckets], task.num_classes)
    report = build_report(test, choose, target_sensitivity=config.target_sensitivity,
                          band_sensitivity=config.band_sensitivity, band_specificity=config.band_specificity,
                          resamples=config.bootstrap_resamples, seed=config.seed, card=card, splits=splits,
                          synthetic=synthetic, class_names=(
                              [n for n in task.class_names if n != task.positive_class][0]
                              if task.num_classes == 2 else f"not {task.positive_class}",
                              task.positive_class))
    report["examples_uri"] = examples_uri
    return write_report(version_dir, report)


def report_latest(config) -> Optional[Dict[str, str]]:
    """The report of the newest pushed version (None when nothing was pushed): a one-line
    hook for `breastdx demo` after its summary."""
    from pipeline.lab.compare import find_run_data

    versions = pushed_versions(config)
    data = find_run_data(config)
    if not versions or data is None:
        return None
    latest = versions[-1]
    existing = {"json": os.path.join(latest, REPORT_JSON), "html": os.path.join(latest, REPORT_HTML)}
    if os.path.exists(existing["json"]) and os.path.exists(existing["html"]):
        with open(existing["json"]) as handle:
            if json.load(handle).get("examples_uri") == data.examples.uri:
                return existing  # a cached re-run: same model, same splits, same report
    return report_for_version(config, latest, data.examples.uri)
