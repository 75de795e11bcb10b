"""The report's figures (matplotlib, Agg): ROC, PR, calibration, confusion, training curves
(one fit's epochs, or staged fine-tuning's stages end to end), as base64 PNGs for the
self-contained HTML page. Called by `components.evaluation.report`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figures(report: dict[str, Any]) -> dict[str, str]:
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
    scaled = report.get("temperature_scaling") or {}
    title = f"Calibration (ECE {report['calibration']['ece']:.3f})"
    if scaled.get(
        "before"
    ):  # the Trainer's temperature scaling: the test split before and after it
        early = [b for b in scaled["before"]["bins"] if b["n"]]
        ax.plot(
            [b["mean_score"] for b in early],
            [b["fraction_positive"] for b in early],
            "s--",
            color="grey",
            label=f"before scaling (ECE {scaled['before']['ece']:.3f})",
        )
        title = (
            f"Calibration, T={scaled['temperature']:.2f} (ECE {scaled['before']['ece']:.3f} -> "
            f"{report['calibration']['ece']:.3f})"
        )
    ax.plot(
        [b["mean_score"] for b in bins],
        [b["fraction_positive"] for b in bins],
        "o-",
        label="as served",
    )
    if scaled.get("before"):
        ax.legend(loc="upper left", fontsize=7)
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive", title=title)
    out["calibration"] = _png(fig)

    cm = report["image_level"]["confusion_at_operating"]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, str(v), ha="center", va="center")
    names = report["class_names"]
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=names[:1] + names[-1:],
        yticklabels=names[:1] + names[-1:],
        xlabel="predicted",
        ylabel="true",
        title=f"Confusion @ {report['thresholds']['operating']['value']:.3f}",
    )
    out["confusion"] = _png(fig)

    series, stage_ends = history_series(report.get("training_history") or {})
    if series.get("loss"):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for key in ("loss", "val_loss"):
            if key in series:
                axes[0].plot(*series[key], "o-", label=key)
        second = [key for key in SECOND_PANEL if key in series]
        for key in second:
            axes[1].plot(*series[key], "o-", label=key.replace("sparse_categorical_", ""))
        axes[0].set(xlabel="epoch", title="loss")
        axes[1].set(xlabel="epoch", title="AUC" if second and "auc" in second[0] else "accuracy")
        for ax in axes:
            for end in stage_ends:
                ax.axvline(end + 0.5, color="grey", linewidth=0.8, linestyle=":")
            if ax.lines:
                ax.legend()
        out["training"] = _png(fig)
    return out


# The training figure's second panel: the first of these the history holds (the classifier's
# accuracy; the mammography Trainers' accuracy or AUC).
SECOND_PANEL = (
    "sparse_categorical_accuracy",
    "val_sparse_categorical_accuracy",
    "accuracy",
    "val_accuracy",
    "auc",
    "val_auc",
)


def history_series(history: Any) -> tuple[dict[str, tuple[list[int], list[float]]], list[int]]:
    """({key: (epochs, values)}, epochs after which a stage ended) from a card's
    ``training_history``: Keras's ``{key: [one value per epoch]}``, or the mammography
    Trainers' staged fine-tuning, a list of stages, each ``{key: [per epoch]}`` with its
    validation (``val_*``) measured once at the stage's end."""
    stages = history if isinstance(history, list) else [history]
    series: dict[str, tuple[list[int], list[float]]] = {}
    ends: list[int] = []
    offset = 0
    for stage in stages:
        if not isinstance(stage, dict):
            continue
        epochs = len(stage.get("loss") or [])
        for key, values in stage.items():
            if isinstance(values, list):
                xs = list(range(offset + 1, offset + len(values) + 1))
            elif key.startswith("val_") and isinstance(values, (int, float)) and epochs:
                xs, values = [offset + epochs], [values]
            else:
                continue
            target = series.setdefault(key, ([], []))
            target[0].extend(xs)
            target[1].extend(float(v) for v in values)
        offset += epochs
        ends.append(offset)
    return series, (ends[:-1] if isinstance(history, list) else [])
