"""The model card: one module builds it, one JSON Schema says what it holds.

Every writer goes through here: the Trainer modules (`trainer_fields`,
`segmentation_fields`), the EvaluationReport component (`evaluation_fields`,
`decision_fields`), the Pusher (`publish_fields`, then `validate` before anything is
published), the model server (`validate` when it loads a version) and the web app
(`headline_metrics`, `decision_rule`: it reads nothing else). Other issues add their
fields through `weights_provenance` (pretrained weights) and `calibration_fields`
(temperature scaling). The file itself is read and written only through `load`, `save` and
`update` (``files``: the local disk, or ``tfx.dsl.io.fileio`` in components). TF-free: the web
app imports it.

The schema is ``breastdx_core/schemas/model_card.schema.json``; the card sits at
``<version>/assets.extra/model_card.json`` (``contract.MODEL_CARD_RELPATH``).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from breastdx_core import contract, errors

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "schemas", "model_card.schema.json")
SCHEMA_VERSION = 1
# Fewer patients or images of a class than these and a metric's CI is not to be trusted:
# the summary, the report and the card say so.
MIN_PATIENTS = 10
MIN_IMAGES_PER_CLASS = 30
# TFMA's metric keys as the Evaluator writes them into the card (snake case), with the
# label the web app shows. The versions page reads exactly these.
HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("auc", "AUC"),
    ("binary_accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("example_count", "examples"),
)


class CardError(errors.UserError):
    """A card that breaks the schema: the message names the field, what was expected and what came."""


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def validate(card: Any) -> dict[str, Any]:
    """Returns ``card`` if it satisfies the schema.

    Raises:
        CardError: naming the first offending field (``decision_rule.ood.threshold``...).
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(card), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(the card)"
        raise CardError(
            f"model card field {where}: {first.message} "
            f"({len(errors)} problem{'s' if len(errors) > 1 else ''}; schema {SCHEMA_PATH})"
        )
    return card


def finite(value: Any) -> Any:
    """JSON-ready: NaN/inf become None, NumPy scalars plain numbers, bytes text."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and not isinstance(value, (list, dict)):  # NumPy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def dumps(card: dict[str, Any]) -> str:
    return json.dumps(finite(card), indent=1)


def loads(text: str) -> dict[str, Any]:
    try:
        card = json.loads(text)
    except ValueError as err:
        raise CardError(f"model card is not JSON: {err}") from None
    if not isinstance(card, dict):
        raise CardError(f"model card must be a JSON object, got {type(card).__name__}")
    return card


def read(path: str) -> dict[str, Any]:
    """A card from a local path (the server, the web app's tests); no validation."""
    return load(path)


# --- the card's file: every reader and writer of model_card.json goes through these --------
FILE_NAME = os.path.basename(contract.MODEL_CARD_RELPATH)  # in a report folder, beside no model


class LocalFiles:
    """The file operations `load`, `save` and `update` need, on the local disk.

    Components pass ``tfx.dsl.io.fileio`` instead (the same three functions), so a card on
    ``gs://`` is read and written alike; this module stays TF-free.
    """

    @staticmethod
    def open(path: str, mode: str = "r"):
        return open(path, mode, encoding="utf-8")

    exists = staticmethod(os.path.exists)

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)


LOCAL = LocalFiles()


def path_in(model_dir: str) -> str:
    """Where a SavedModel's (or a pushed version's) card is: ``contract.MODEL_CARD_RELPATH``."""
    return os.path.join(model_dir, contract.MODEL_CARD_RELPATH)


def load(path: str, files: Any = LOCAL, missing_ok: bool = False) -> dict[str, Any]:
    """The card at ``path`` ({} where there is none and ``missing_ok``); no validation.

    Raises:
        CardError: the file is not a JSON object.
    """
    if missing_ok and not files.exists(path):
        return {}
    with files.open(path, "r") as handle:
        return loads(handle.read())


def save(path: str, card: dict[str, Any], files: Any = LOCAL) -> str:
    """Writes ``card`` as `dumps` spells it (NaN as null), creating the folder; returns ``path``.

    On an object store no folder is made: a folder there is only a key prefix, and
    TensorFlow's GCS file system would write a zero-byte marker object that KFP's launcher
    later downloads as a file (components/folders.py says more)."""
    folder = os.path.dirname(path)
    if not folder.startswith(contract.OBJECT_STORE_SCHEMES):
        files.makedirs(folder)
    with files.open(path, "w") as handle:
        handle.write(dumps(card))
    return path


def update(path: str, fields: dict[str, Any], files: Any = LOCAL) -> dict[str, Any]:
    """Adds ``fields`` to the card at ``path`` and writes it back; returns the new card."""
    card = load(path, files)
    card.update(fields)
    save(path, card, files)
    return card


# --- the Trainer's part -------------------------------------------------------------------
def trainer_fields(
    *,
    config: dict[str, Any],
    signature: str,
    input_description: str,
    outputs: Any,
    parameters: dict[str, int],
    history: dict[str, list[float]],
    seconds: float,
    variant: str = "classification",
    intended_use: str = "Trained for research on breast images; "
    "not validated for clinical decisions.",
    **extra: Any,
) -> dict[str, Any]:
    """The fields every Trainer writes (classification and segmentation alike).

    Args:
        config: the Trainer's custom_config (class_names, positive_index, model_size...).
        signature, input_description, outputs: the serving contract.
        parameters: {"total": n[, "trainable": n]}.
        history: Keras's per-epoch history; seconds: the fit's wall time.
        extra: further fields (backbone, hyperparameters...), kept as given.
    """
    class_names = [str(n) for n in config["class_names"]]
    task = contract.TASKS.get(str(config.get("task") or ""))
    scale = task.image.microns_per_pixel if task else None
    card = {
        "schema_version": SCHEMA_VERSION,
        "intended_use": f"{contract.RESEARCH_ONLY} {intended_use}",
        "task": str(config.get("task") or ""),
        "variant": variant,
        "class_names": class_names,
        "positive_class": class_names[int(config["positive_index"])],
        "input_contract": {
            "signature": signature,
            "input": input_description,
            "model_size": [int(v) for v in config["model_size"]],
            "outputs": outputs,
            **({"microns_per_pixel": scale} if scale else {}),
        },
        "parameters": parameters,
        "training_history": history,
        "train_seconds": round(float(seconds), 1),
    }
    card.update(extra)
    return finite(card)


def weights_provenance(
    source: str,
    file: str | None = None,
    sha256: str | None = None,
    license: str | None = None,
    note: str | None = None,
    **package: str | None,
) -> dict[str, Any]:
    """``{"weights_provenance": {...}}`` for ``card.update``: where pretrained weights came from.

    ``package``: for weights installed from a package registry
    (`components.trainer.model.weights_provenance`): ``package``, ``package_version``,
    ``package_file``, ``package_file_sha256``, ``dataset``, ``backbone``.
    """
    return {
        "weights_provenance": {
            "source": source,
            "file": file,
            "sha256": sha256,
            "license": license,
            "note": note,
            **package,
        }
    }


def calibration_fields(
    method: str,
    temperature: float,
    ece_before: float | None,
    ece_after: float | None,
    fitted_on: str = "eval",
) -> dict[str, Any]:
    """``{"calibration": {...}}`` for ``card.update``: temperature scaling and its ECE."""
    return finite(
        {
            "calibration": {
                "method": method,
                "temperature": float(temperature),
                "ece_before": ece_before,
                "ece_after": ece_after,
                "fitted_on": fitted_on,
            }
        }
    )


# --- the EvaluationReport component's part -------------------------------------------------
def small_sample_warnings(
    n_patients: int, per_class: Sequence[int], class_names: Sequence[str], split: str
) -> list[str]:
    """One sentence per reason a split's metrics and CIs rest on too little data."""
    warnings = []
    if n_patients < MIN_PATIENTS:
        warnings.append(
            f"{split} split: {n_patients} patients (fewer than {MIN_PATIENTS}): metrics and their "
            "confidence intervals are not reliable"
        )
    for name, count in zip(class_names, per_class):
        if count < MIN_IMAGES_PER_CLASS:
            warnings.append(
                f"{split} split: {count} images of {name} (fewer than {MIN_IMAGES_PER_CLASS}): "
                "its rates and their intervals are not reliable"
            )
    return warnings


def evaluation_fields(
    *,
    tfma_metrics: dict[str, Any],
    n_images: int,
    n_patients: int,
    synthetic: bool,
    test: dict[str, Any],
    report_paths: dict[str, str],
    accepted: dict[str, Any] | None,
    decision_rule: dict[str, Any],
    warnings: Sequence[str],
) -> dict[str, Any]:
    """The fields the EvaluationReport component adds before the push."""
    note = (
        "Metrics of the SYNTHETIC data the pipeline ran on: they say nothing about real tissue."
        if synthetic
        else "Metrics of the data set the pipeline ran on."
    )
    fields: dict[str, Any] = {
        "evaluation": {
            "split": "eval (patient-grouped)",
            "metrics": tfma_metrics,
            "n_images": int(n_images),
            "n_patients": int(n_patients),
            "synthetic_data": bool(synthetic),
            "test": test,
            "note": note,
        },
        "decision_rule": decision_rule,
        "evaluation_report": {
            **report_paths,
            "split": "test (patient-grouped, held out)",
            "synthetic_data": bool(synthetic),
        },
        "small_sample_warnings": list(warnings),
    }
    return finite(fields)


def with_accepted(card: dict[str, Any], accepted: dict[str, Any] | None) -> dict[str, Any]:
    """The card with the measured input contract under ``input_contract.accepted``."""
    if accepted:
        card = {
            **card,
            "input_contract": {**card.get("input_contract", {}), "accepted": finite(accepted)},
        }
    return card


# --- the Pusher's part ----------------------------------------------------------------------
def publish_fields(
    model_name: str, version: int, pipeline_run_id: str | None, trained_model_uri: str
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "version": int(version),
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pipeline_run_id": pipeline_run_id,
        "trained_model_uri": trained_model_uri,
    }


# --- what readers use -----------------------------------------------------------------------
def headline_metrics(card: dict[str, Any]) -> list[dict[str, Any]]:
    """[{key, label, value}] of the eval metrics the versions page shows (value None when absent)."""
    metrics = ((card or {}).get("evaluation") or {}).get("metrics") or {}
    rows = []
    for key, label in HEADLINE_METRICS:
        value = metrics.get(key)
        rows.append(
            {
                "key": key,
                "label": label,
                "value": value
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else None,
            }
        )
    return rows


def microns_per_pixel(card: dict[str, Any]) -> float | None:
    """The training images' scale: ``input_contract.microns_per_pixel``, else the task's
    default (cards written before the field: IDC 4.0, 2.5x of a 40x scan), else None."""
    value = ((card or {}).get("input_contract") or {}).get("microns_per_pixel")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    task = contract.TASKS.get(str((card or {}).get("task") or "idc"))
    return task.image.microns_per_pixel if task else None


def decision_rule(card: dict[str, Any]) -> dict[str, Any] | None:
    rule = (card or {}).get("decision_rule")
    return rule if isinstance(rule, dict) else None
