"""`breastdx cv --folds K`: patient-level K-fold cross-validation through the Trainer module.

One split of 13 or 28 patients says little; pathology studies (Slideflow's, Janowczyk &
Madabhushi's) evaluate by patient-level K-fold. This module runs the pipeline's data
stages (ImageExampleGen ... Transform, TFX-cached, under the same pipeline name as
`breastdx demo`), then for each fold k trains one model with `trainer_module.run_fn` (a
`FnArgs` as TFX's Trainer builds it, `compare.fn_args_for`: no second training path), on
patient-disjoint groups: fold k's patients are the test set, a few other patients the
eval split (early stopping, temperature scaling), the rest train. Every patient is
predicted once, by the model that never saw them; the per-fold and pooled ("out of fold")
AUC, balanced accuracy, F1, sensitivity and specificity carry patient-bootstrap CIs
(`breastdx_core.metrics`).

Records are regrouped by patient once: each patient's raw records and their Transform
output (the run's own TransformGraph; it has no analyzers, so it is the same for every
fold) are written to one file each, and a fold is a list of those files.

Called by `breastdx_cli/main.py` (`add_parser` is in its VERB_REGISTRARS) and by `bench/real.py`.
Results go to ``<workdir>/reports/cv/`` (or ``--out``): ``cv.json``, ``cv.md``, ``roc.png``,
``index.html``.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from breastdx_core import cli_options, contract, errors, metrics
from breastdx_core.configs import PipelineConfig

log = logging.getLogger(__name__)

# f1_at_28.4%: F1 with the classes reweighted to the IDC references' prevalence
# (metrics.f1_at_prevalence): the dev set's 15.8 % would otherwise lower F1 by itself.
METRICS = ("auc", "balanced_accuracy", "f1", "f1_at_28.4%", "sensitivity", "specificity")
THRESHOLD = 0.5  # the calibrated model's default decision threshold
# Operating thresholds chosen on each fold's eval patients (never its test patients) and
# applied to its test patients: the F1 / balanced accuracy a user gets who sets the
# threshold on held-out patients of their own. "sensitivity_0.95" is the evaluation
# report's operating rule (components/evaluation/statistics.build_report).
# "max_f1_at_28.4%": the threshold that maximises F1 at the references' prevalence on the
# eval patients, whose own prevalence (7-29 % in the dev set's folds) would otherwise
# choose an operating point for a different population than the one F1 at 28.4 % describes.
OPERATING_RULES = ("max_f1", "max_f1_at_28.4%", "max_balanced_accuracy", "sensitivity_0.95")
RULE_TITLES = {
    "max_f1": "eval max F1",
    "max_f1_at_28.4%": "eval max F1 at 28.4 %",
    "max_balanced_accuracy": "eval max balanced accuracy (Youden)",
    "sensitivity_0.95": "eval sensitivity 0.95 (the evaluation report's rule)",
}


SMALL_DATA_BATCHES = 4  # fewer images than folds x batch x this: the run goes on, with a warning


class CvError(errors.UserError):
    """The data cannot be cross-validated as asked (the CLI exits 2 with the message)."""


# --- folds ------------------------------------------------------------------------------
def _patient_classes(labels: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """patient -> images per class (0/1: negative/positive)."""
    return {
        str(p): np.bincount(labels[groups == p].astype(int), minlength=2)[:2]
        for p in np.unique(groups)
    }


def assign_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[list[str]]:
    """Patient-disjoint folds with about the same class balance (sklearn's
    StratifiedGroupKFold over images, grouped by patient).

    Raises:
        CvError: fewer patients than folds (folds cannot be patient-disjoint).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    patients = np.unique(groups)
    if folds < 2:
        raise CvError(f"--folds must be at least 2, got {folds}")
    if len(patients) < folds:
        raise CvError(
            f"{folds} folds cannot be patient-disjoint with {len(patients)} patients: "
            f"use --folds {len(patients)} or fewer"
        )
    if len(np.unique(labels)) < 2:
        raise CvError(
            f"every image has label {int(labels[0])}: a classifier cannot be cross-validated "
            "on one class"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        sorted({str(p) for p in groups[test]})
        for _, test in splitter.split(np.zeros(len(labels)), labels, groups)
    ]


def eval_patients(
    candidates: Sequence[str], classes: dict[str, np.ndarray], fraction: float, seed: int
) -> list[str]:
    """A few of the training patients for the eval split (early stopping and calibration):
    ``fraction`` of them, at least one; among 200 seeded draws the first whose eval and
    train sides both hold both classes, else the last draw."""
    rng = np.random.default_rng(seed)
    n = min(max(1, int(round(fraction * len(candidates)))), len(candidates) - 1)
    pick: list[str] = []
    for _ in range(200):
        pick = sorted(rng.choice(sorted(candidates), size=n, replace=False).tolist())
        rest = [p for p in candidates if p not in pick]
        both = lambda ps: all(sum(classes[p][c] for p in ps) > 0 for c in (0, 1))  # noqa: E731
        if both(pick) and both(rest):
            break
    return pick


def data_warnings(classes: dict[str, np.ndarray], class_names: Sequence[str]) -> list[str]:
    """Plain-language problems of the patient structure (one patient holds a class...)."""
    notes = []
    for c, name in enumerate(class_names[:2]):
        holders = [p for p, counts in classes.items() if counts[c] > 0]
        if len(holders) == 1:
            notes.append(
                f"class {name!r}: all {int(classes[holders[0]][c])} images come from one patient "
                f"({holders[0]}): the fold that tests this patient trains without the class, and no fold "
                "measures the class on an unseen patient"
            )
        elif not holders:
            notes.append(f"class {name!r}: no images")
    return notes


# --- the data, regrouped by patient ------------------------------------------------------
@dataclasses.dataclass
class PatientFiles:
    raw: dict[str, str]  # patient -> GZIP TFRecord of ImageExampleGen records
    transformed: dict[str, str]  # patient -> GZIP TFRecord of Transform outputs
    labels: np.ndarray  # per image, 0/1 positive
    groups: np.ndarray  # per image, patient id


def _safe(patient: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in patient)


def regroup_by_patient(
    examples_uri: str, transform_graph_uri: str, out_dir: str, positive_index: int, batch: int = 256
) -> PatientFiles:
    """Writes every patient's raw and transformed records to a file of their own (once:
    a ``done.json`` marks a finished folder)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from pipeline.summary import split_records

    marker = os.path.join(out_dir, "done.json")
    if os.path.exists(marker):
        with open(marker) as handle:
            done = json.load(handle)
        if done.get("examples_uri") == examples_uri:
            return PatientFiles(
                done["raw"],
                done["transformed"],
                np.asarray(done["labels"]),
                np.asarray(done["groups"]),
            )
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(os.path.join(out_dir, "raw"))
    os.makedirs(os.path.join(out_dir, "transformed"))
    tft_output = tft.TFTransformOutput(transform_graph_uri)
    layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()
    spec = {
        contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
        contract.PATIENT_KEY: tf.io.FixedLenFeature([], tf.string),
    }
    files = [f for split in ("train", "eval", "test") for f in split_records(examples_uri, split)]
    if not files:
        raise CvError(f"no ImageExampleGen records under {examples_uri}")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    writers: dict[str, tuple[Any, Any]] = {}
    raw_paths: dict[str, str] = {}
    transformed_paths: dict[str, str] = {}
    labels: list[int] = []
    groups: list[str] = []
    try:
        for records in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch):
            parsed = tf.io.parse_example(records, spec)
            outputs = layer(tf.io.parse_example(records, raw_spec))
            images = outputs[contract.TRANSFORMED_IMAGE_KEY].numpy()
            for record, patient, label, image in zip(
                records.numpy(),
                parsed[contract.PATIENT_KEY].numpy(),
                parsed[contract.LABEL_KEY].numpy(),
                images,
            ):
                patient = patient.decode("utf-8")
                if patient not in writers:
                    raw_paths[patient] = os.path.join(out_dir, "raw", f"{_safe(patient)}.gz")
                    transformed_paths[patient] = os.path.join(
                        out_dir, "transformed", f"{_safe(patient)}.gz"
                    )
                    writers[patient] = (
                        tf.io.TFRecordWriter(raw_paths[patient], options),
                        tf.io.TFRecordWriter(transformed_paths[patient], options),
                    )
                example = tf.train.Example()
                example.features.feature[contract.TRANSFORMED_IMAGE_KEY].float_list.value.extend(
                    image.ravel()
                )
                example.features.feature[contract.TRANSFORMED_LABEL_KEY].int64_list.value.append(
                    int(label)
                )
                writers[patient][0].write(record)
                writers[patient][1].write(example.SerializeToString())
                labels.append(int(label == positive_index))
                groups.append(patient)
    finally:
        for raw, transformed in writers.values():
            raw.close()
            transformed.close()
    with open(marker, "w") as handle:
        json.dump(
            {
                "examples_uri": examples_uri,
                "raw": raw_paths,
                "transformed": transformed_paths,
                "labels": labels,
                "groups": groups,
            },
            handle,
        )
    return PatientFiles(raw_paths, transformed_paths, np.asarray(labels), np.asarray(groups))


def _image_root(examples_uri: str) -> str | None:
    path = os.path.join(examples_uri, "ingest_report.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle).get("image_root")


def ensure_data_stages(config: PipelineConfig):
    """The newest run's ImageExampleGen and Transform outputs for ``config.data_root``;
    runs only the data stages (cached where they ran before) when there are none."""
    from lab import compare

    data = compare.find_run_data(config)
    if data is not None and os.path.realpath(
        _image_root(data.examples.uri) or ""
    ) == os.path.realpath(config.data_root):
        return data
    from tfx import v1 as tfx

    from breastdx_core.configs import TRANSFORM_MODULE_FILE
    from pipeline import pipeline as pipeline_module
    from pipeline import preflight

    found = preflight.check(config.data_root, config.task_spec, config.layout)
    log.info(
        "cv: data stages on %s (%s layout, %d image files)",
        config.data_root,
        found.layout,
        found.candidates,
    )
    stages = pipeline_module._data_stages(config, None, TRANSFORM_MODULE_FILE, config.schema_path)
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name=config.pipeline_name,
            pipeline_root=config.pipeline_root,
            components=list(stages),
            enable_cache=config.enable_cache,
            beam_pipeline_args=config.beam_pipeline_args(),
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                config.metadata_path
            ),
        )
    )
    data = compare.find_run_data(config)
    if data is None:
        raise CvError(f"no Transform output in {config.metadata_path} after the data stages ran")
    return data


# --- metrics ------------------------------------------------------------------------------
def _metric_fns(threshold: float):
    def confusion_ratio(name):
        def fn(y, s):
            cm = metrics.confusion(y, s, threshold)
            sens = cm["tp"] / (cm["tp"] + cm["fn"]) if cm["tp"] + cm["fn"] else float("nan")
            spec = cm["tn"] / (cm["tn"] + cm["fp"]) if cm["tn"] + cm["fp"] else float("nan")
            if name == "sensitivity":
                return sens
            if name == "specificity":
                return spec
            if name == "balanced_accuracy":
                return (sens + spec) / 2
            if name == "f1_at_28.4%":
                return metrics.f1_at_prevalence(y, s, threshold)
            den = 2 * cm["tp"] + cm["fp"] + cm["fn"]
            return 2 * cm["tp"] / den if den else float("nan")

        return fn

    return {"auc": metrics.roc_auc, **{name: confusion_ratio(name) for name in METRICS[1:]}}


def metrics_with_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    resamples: int,
    seed: int,
    threshold: float = THRESHOLD,
    names: Sequence[str] = METRICS,
) -> dict[str, dict[str, Any]]:
    """Each of ``names`` (default `METRICS`): {value, ci95 (patient bootstrap) or None}."""
    out = {}
    for name, fn in _metric_fns(threshold).items():
        if name not in names:
            continue
        out[name] = {
            "value": float(fn(labels, scores)),
            "ci95": metrics.patient_bootstrap(
                labels, scores, groups, metric=fn, resamples=resamples, seed=seed
            ),
        }
    return out


def choose_threshold(labels: np.ndarray, scores: np.ndarray, rule: str) -> float:
    """The operating threshold (``scores >= t`` called positive) that ``rule`` picks on
    these (eval) images: the distinct score maximising F1, F1 at the references' 28.4 %
    prevalence or balanced accuracy (ties: the one nearest 0.5), or the evaluation report's
    sensitivity-0.95 threshold. 0.5 where the images cannot choose one (a class missing).

    Raises:
        ValueError: an unknown rule.
    """
    from components.evaluation.statistics import best_threshold, threshold_for_sensitivity

    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    if rule not in OPERATING_RULES:
        raise ValueError(f"unknown operating rule {rule!r}: one of {', '.join(OPERATING_RULES)}")
    if labels.all() or not labels.any():
        return THRESHOLD
    if rule == "sensitivity_0.95":
        return float(threshold_for_sensitivity(labels, scores, 0.95))
    if rule == "max_f1_at_28.4%":
        return best_threshold(labels, scores, "max_f1_at_reference_prevalence", THRESHOLD)
    return best_threshold(labels, scores, rule, THRESHOLD)


def decisions_at(
    rows: Sequence[dict[str, Any]], rule: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores, decisions 0/1, patients) of the test images of ``rows`` (folds),
    each fold's images called at that fold's own ``rule`` threshold."""
    y = np.concatenate([r["labels"] for r in rows]).astype(int)
    s = np.concatenate([r["scores"] for r in rows]).astype(float)
    d = np.concatenate(
        [
            (np.asarray(r["scores"], dtype=float) >= r["operating"][rule]["threshold"]).astype(
                float
            )
            for r in rows
        ]
    )
    g = np.concatenate([r["groups"] for r in rows])
    return y, s, d, g


def operating_metrics(
    rows: Sequence[dict[str, Any]], rule: str, resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """`metrics_with_ci` (less AUC, which no threshold changes) of ``rows``' test images
    called at each fold's eval-chosen ``rule`` threshold, pooled over the folds given."""
    y, _, d, g = decisions_at(rows, rule)
    return metrics_with_ci(
        y, d, g, resamples, seed, threshold=0.5, names=METRICS[1:]
    )  # d is the fold's 0/1 call


# --- test-time augmentation scored beside the plain model -------------------------------
def dihedral_records(records: Sequence[bytes]) -> list[bytes]:
    """The 8 orientations (4 quarter turns, each mirrored; `export.dihedral_views`' group)
    of each serialized record's stored image, re-encoded losslessly as PNG, each in a
    tf.Example holding only ``image_raw`` (all ``serving_examples`` reads): 8 per record,
    record by record."""
    import tensorflow as tf

    spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    out = []
    for encoded in tf.io.parse_example(list(records), spec)[contract.IMAGE_KEY].numpy():
        image = tf.io.decode_image(encoded, expand_animations=False).numpy()
        turns = [np.rot90(image, k) for k in range(4)]
        for view in turns + [turn[:, ::-1] for turn in turns]:
            example = tf.train.Example()
            example.features.feature[contract.IMAGE_KEY].bytes_list.value.append(
                tf.io.encode_png(np.ascontiguousarray(view)).numpy()
            )
            out.append(example.SerializeToString())
    return out


def dihedral_scores(model, examples_uri: str, split: str, batch: int = 32) -> np.ndarray:
    """P(positive) of ``split``'s images (the order `score_split` reads them in) averaged
    over their 8 orientations, each through the plain model's ``serving_examples``
    signature (the Transform inside): the scores of the same model exported with
    ``tta``, up to the Transform's zero-padding of odd-sized edge patches, from one
    training."""
    import tensorflow as tf

    from components.evaluation.scoring import split_records

    serve = model.signatures[contract.SIGNATURE_EXAMPLES]
    files = split_records(examples_uri, split)
    scores = []
    for records in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch):
        views = dihedral_records(records.numpy().tolist())
        positive = serve(**{contract.SERVING_INPUT_EXAMPLES: tf.constant(views)})
        scores.append(positive[contract.OUTPUT_POSITIVE].numpy().reshape(-1, 8).mean(axis=1))
    return np.concatenate(scores) if scores else np.zeros(0)


# --- one fold -----------------------------------------------------------------------------
def train_fold(
    config: PipelineConfig,
    data,
    files: PatientFiles,
    fold: int,
    test: list[str],
    evaluation: list[str],
    train: list[str],
    out_dir: str,
    keep_model: bool = False,
    score_tta: bool = False,
) -> dict[str, Any]:
    """Trains fold ``fold`` through `trainer_module.run_fn` and scores its test patients;
    with ``score_tta`` (a model exported without ``tta``) also with the 8 orientations
    averaged (`dihedral_scores`), under ``row["tta"]``."""
    import attr
    import tf_keras as keras

    from components.evaluation.scoring import score_split
    from components.trainer import trainer_module
    from lab import compare

    fold_dir = os.path.join(out_dir, f"fold-{fold}")
    shutil.rmtree(fold_dir, ignore_errors=True)
    heldout = os.path.join(fold_dir, "heldout")
    for split, patients in (("test", test), ("eval", evaluation)):
        os.makedirs(os.path.join(heldout, f"Split-{split}"))
        for patient in patients:
            os.symlink(
                files.raw[patient],
                os.path.join(heldout, f"Split-{split}", os.path.basename(files.raw[patient])),
            )
    budget = compare.Budget(
        "cv",
        train_steps=config.training.train_steps or None,
        eval_steps=config.training.eval_steps or None,
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        train_score_limit=0,
    )
    custom_config = config.replace(seed=config.seed + fold).custom_config("training")
    fn_args = compare.fn_args_for(data, custom_config, budget, fold_dir)
    fn_args = attr.evolve(
        fn_args,
        train_files=[files.transformed[p] for p in train],
        eval_files=[files.transformed[p] for p in evaluation],
    )
    started = time.time()
    trainer_module.run_fn(fn_args)
    wall = time.time() - started
    keras.backend.clear_session()
    with open(os.path.join(fn_args.serving_model_dir, contract.MODEL_CARD_RELPATH)) as handle:
        card = json.load(handle)
    import tensorflow as tf

    model = tf.saved_model.load(fn_args.serving_model_dir)
    scoring_started = time.time()
    test_scores = score_split(fn_args.serving_model_dir, heldout, "test", model=model)
    y, s, g = test_scores.binary(config.task_spec.positive_index)
    # The operating thresholds are chosen on the eval patients (calibration's and early
    # stopping's), never on the test patients they are applied to.
    eval_scores = score_split(fn_args.serving_model_dir, heldout, "eval", model=model)
    ey, es, eg = eval_scores.binary(config.task_spec.positive_index)
    context = fold_slide_context((ey, es, eg, eval_scores.xy()), (y, s, g, test_scores.xy()))
    scoring_wall = time.time() - scoring_started
    tta = None
    if score_tta and not config.training.tta:
        tta_started = time.time()
        tta_test = dihedral_scores(model, heldout, "test")
        tta_eval = dihedral_scores(model, heldout, "eval")
        tta = {
            "scores": tta_test.tolist(),
            "operating": {
                rule: {"threshold": choose_threshold(ey, tta_eval, rule)}
                for rule in OPERATING_RULES
            },
            "slide_context": fold_slide_context(
                (ey, tta_eval, eg, eval_scores.xy()), (y, tta_test, g, test_scores.xy())
            ),
            "wall_seconds": round(time.time() - tta_started, 1),
        }
    del model
    if not keep_model:
        shutil.rmtree(fn_args.serving_model_dir, ignore_errors=True)
    return {
        "fold": fold,
        "test_patients": test,
        "eval_patients": evaluation,
        "train_patients": train,
        "n_test_images": int(len(y)),
        "n_test_positive": int(y.sum()),
        "wall_seconds": round(wall, 1),
        "scoring_wall_seconds": round(scoring_wall, 1),
        "budget": card.get("training_budget"),
        "calibration": card.get("calibration"),
        "training_history": card.get("training_history"),
        "operating": {
            rule: {"threshold": choose_threshold(ey, es, rule)} for rule in OPERATING_RULES
        },
        "n_eval_images": int(len(ey)),
        "n_eval_positive": int(ey.sum()),
        # what the thresholds were chosen on, so that another rule can be judged later
        "eval_labels": ey.tolist(),
        "eval_scores": es.tolist(),
        "eval_groups": _patient_names(eg),
        "slide_context": context,
        "tta": tta,
        "labels": y.tolist(),
        "scores": s.tolist(),
        "groups": _patient_names(g),
    }


def _patient_names(groups) -> list[str]:
    """Patient ids as the JSON keeps them (the records hold bytes)."""
    return [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in groups]


def fold_slide_context(evaluation: tuple, test: tuple) -> dict[str, Any] | None:
    """A fold's slide-context scores of its test patches (`breastdx_core.slide_context`:
    the width and the operating thresholds chosen on its eval patches), or None where the
    patches carry no x/y. Each of ``evaluation``/``test``: (labels, scores, patients, xy [n, 2] or None)."""
    from breastdx_core import slide_context

    (ey, es, eg, exy), (_, s, g, xy) = evaluation, test
    if exy is None or xy is None:
        return None
    chosen = slide_context.choose_sigma(ey, es, exy[:, 0], exy[:, 1], eg)
    smooth_eval = slide_context.slide_context(es, exy[:, 0], exy[:, 1], eg, chosen["sigma"])
    smooth_test = slide_context.slide_context(s, xy[:, 0], xy[:, 1], g, chosen["sigma"])
    return {
        "sigma": chosen["sigma"],
        "eval_auc_by_sigma": {str(k): v for k, v in chosen["auc"].items()},
        "scores": smooth_test.tolist(),
        "operating": {
            rule: {"threshold": choose_threshold(ey, smooth_eval, rule)} for rule in OPERATING_RULES
        },
    }


def pooled_slide_context(
    rows: Sequence[dict[str, Any]], resamples: int, seed: int
) -> dict[str, Any] | None:
    """Slide-context metrics pooled over the folds (each fold's own width and thresholds),
    or None where a fold has none."""
    if not rows or any(not r.get("slide_context") for r in rows):
        return None
    shadow = [
        {**r, "scores": r["slide_context"]["scores"], "operating": r["slide_context"]["operating"]}
        for r in rows
    ]
    return {
        "sigmas": [r["slide_context"]["sigma"] for r in rows],
        **pooled(shadow, resamples, seed),
    }


def pooled(rows: Sequence[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    """The folds' test images pooled: metrics at 0.5 and at each operating rule."""
    y = np.concatenate([r["labels"] for r in rows]).astype(int)
    s = np.concatenate([r["scores"] for r in rows]).astype(float)
    g = np.concatenate([r["groups"] for r in rows])
    return {
        "n_images": int(len(y)),
        "n_patients": int(len(np.unique(g))),
        "metrics": metrics_with_ci(y, s, g, resamples, seed),
        "operating": {
            rule: {
                "thresholds": [r["operating"][rule]["threshold"] for r in rows],
                "metrics": operating_metrics(rows, rule, resamples, seed),
            }
            for rule in OPERATING_RULES
        },
    }


def pooled_tta(rows: Sequence[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any] | None:
    """`pooled` and `pooled_slide_context` of the folds' orientation-averaged scores, or
    None where a fold has none."""
    if not rows or any(not r.get("tta") for r in rows):
        return None
    shadow = [
        {
            **r,
            "scores": r["tta"]["scores"],
            "operating": r["tta"]["operating"],
            "slide_context": r["tta"]["slide_context"],
        }
        for r in rows
    ]
    return {
        **pooled(shadow, resamples, seed),
        "slide_context": pooled_slide_context(shadow, resamples, seed),
        "wall_seconds": [r["tta"]["wall_seconds"] for r in rows],
    }


# --- the whole run ------------------------------------------------------------------------
def cross_validate(
    config: PipelineConfig,
    folds: int,
    out_dir: str | None = None,
    eval_fraction: float = 0.2,
    resamples: int | None = None,
    keep_models: bool = False,
    only_folds: Sequence[int] | None = None,
    score_tta: bool = False,
) -> dict[str, Any]:
    """Runs the K folds; returns the result dict (also written as cv.json, cv.md, roc.png,
    index.html under ``out_dir``). With ``score_tta`` each fold's model also scores its
    held-out patients with the 8 orientations averaged: ``result["tta"]``.

    Raises:
        CvError: the data cannot give ``folds`` patient-disjoint folds.
    """
    out_dir = out_dir or os.path.join(config.workdir, "reports", "cv")
    os.makedirs(out_dir, exist_ok=True)
    resamples = config.evaluation.bootstrap_resamples if resamples is None else resamples
    data = ensure_data_stages(config)
    files = regroup_by_patient(
        data.examples.uri,
        data.transform_graph_uri,
        os.path.join(config.workdir, "cv-data", config.pipeline_name),
        config.task_spec.positive_index,
    )
    classes = _patient_classes(files.labels, files.groups)
    warnings = data_warnings(classes, config.task_spec.class_names)
    if len(files.labels) < folds * config.training.batch_size * SMALL_DATA_BATCHES:
        warnings.append(
            f"{len(files.labels)} images for {folds} folds at batch "
            f"{config.training.batch_size}: each fold's "
            f"model trains on fewer than {SMALL_DATA_BATCHES * (folds - 1)} batches per epoch; its "
            "figures are noisy"
        )
    for note in warnings:
        log.warning("cv: %s", note)
    assignment = assign_folds(files.labels, files.groups, folds, config.seed)
    started = time.time()
    rows = []
    for k, test in enumerate(assignment):
        if only_folds is not None and k not in only_folds:
            continue
        rest = [p for p in sorted(classes) if p not in test]
        evaluation = eval_patients(rest, classes, eval_fraction, config.seed + k)
        train = [p for p in rest if p not in evaluation]
        for side, patients in (("train", train), ("eval", evaluation), ("test", test)):
            present = sum(classes[p] for p in patients)
            if not present.all():
                note = (
                    f"fold {k}: its {side} patients ({', '.join(patients)}) hold no "
                    f"{config.task_spec.class_names[int(np.argmin(present))]!r} images"
                )
                warnings.append(note)
                log.warning("cv: %s", note)
        log.info(
            "cv: fold %d (of %d): train %d patients, eval %d, test %d (%s)",
            k,
            folds,
            len(train),
            len(evaluation),
            len(test),
            ", ".join(test),
        )
        row = train_fold(
            config, data, files, k, test, evaluation, train, out_dir, keep_models, score_tta
        )
        y, s, g = np.asarray(row["labels"]), np.asarray(row["scores"]), np.asarray(row["groups"])
        row["metrics"] = metrics_with_ci(y, s, g, resamples, config.seed)
        for rule in OPERATING_RULES:
            row["operating"][rule]["metrics"] = operating_metrics(
                [row], rule, resamples, config.seed
            )
        log.info(
            "cv: fold %d: AUC %.3f, balanced accuracy %.3f, F1 %.3f (%d images, %.0f s)",
            k,
            row["metrics"]["auc"]["value"],
            row["metrics"]["balanced_accuracy"]["value"],
            row["metrics"]["f1"]["value"],
            len(y),
            row["wall_seconds"],
        )
        rows.append(row)
    result = {
        "meta": {
            "data_root": config.data_root,
            "task": config.task,
            "folds": folds,
            "folds_run": len(rows),
            "patients": len(classes),
            "images": int(len(files.labels)),
            "positive_images": int(files.labels.sum()),
            "backbone": config.training.backbone,
            "weights": config.training.weights or "none (random initialisation)",
            "stain_jitter": config.training.stain_jitter,
            "augment": config.training.augment,
            "epochs": config.training.epochs,
            "train_steps": config.training.train_steps,
            "max_train_minutes": config.training.max_train_minutes,
            "batch_size": config.training.batch_size,
            "learning_rate": config.training.learning_rate,
            "calibration": config.training.calibration,
            "eval_fraction": eval_fraction,
            "tta": bool(config.training.tta),
            "score_tta": bool(score_tta and not config.training.tta),
            "threshold": THRESHOLD,
            "operating_rules": list(OPERATING_RULES),
            "bootstrap_resamples": resamples,
            "seconds": round(time.time() - started, 1),
            "synthetic_data": _is_synthetic(config),
            "research_only": contract.RESEARCH_ONLY,
        },
        "warnings": warnings,
        "folds": rows,
        "pooled": pooled(rows, resamples, config.seed),
        "slide_context": pooled_slide_context(rows, resamples, config.seed),
        "tta": pooled_tta(rows, resamples, config.seed),
    }
    if result["slide_context"] is None:
        note = (
            "slide context: the patches carry no x/y in their file names (IDC's _x<X>_y<Y>): "
            "per-patch figures only"
        )
        warnings.append(note)
        log.warning("cv: %s", note)
    result["files"] = write_outputs(result, out_dir)
    return result


def _is_synthetic(config: PipelineConfig) -> bool:
    return os.path.realpath(config.data_root) == os.path.realpath(
        os.path.join(config.workdir, "data", config.task)
    )


# --- outputs ------------------------------------------------------------------------------
def _cell(entry: dict[str, Any]) -> str:
    value, ci = entry["value"], entry["ci95"]
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else f"{value:.3f}"


def render_markdown(result: dict[str, Any]) -> str:
    """The table: one row per fold and the pooled row, each metric with its 95 % CI."""
    meta = result["meta"]
    steps = f", {meta['train_steps']} steps" if meta["train_steps"] else ""
    lines = [
        f"Patient-level {meta['folds']}-fold cross-validation: {meta['patients']} patients, {meta['images']} "
        f"images ({meta['positive_images']} positive); {meta['backbone']}, weights {meta['weights']}, "
        f"stain jitter {meta['stain_jitter']}, {meta['epochs']} epochs"
        f"{steps}; threshold {meta['threshold']} "
        f"on calibrated scores; 95 % CIs by patient bootstrap ({meta['bootstrap_resamples']} resamples). "
        f"{meta['research_only']}",
        "",
        "| fold | test patients | images | " + " | ".join(METRICS) + " | images seen | seconds |",
        "|---|---|---:|" + "---|" * len(METRICS) + "---:|---:|",
    ]
    for row in result["folds"]:
        seen = (row.get("budget") or {}).get("images_seen", "?")
        lines.append(
            f"| {row['fold']} | {', '.join(row['test_patients'])} | {row['n_test_images']} | "
            + " | ".join(_cell(row["metrics"][m]) for m in METRICS)
            + f" | {seen} | {row['wall_seconds']} |"
        )
    pooled = result["pooled"]
    lines.append(
        f"| pooled | {pooled['n_patients']} patients | {pooled['n_images']} | "
        + " | ".join(_cell(pooled["metrics"][m]) for m in METRICS)
        + f" | | {meta['seconds']} |"
    )
    lines += _operating_lines(pooled, meta["threshold"])
    lines += _context_lines(result.get("slide_context"))
    tta = result.get("tta")
    if tta:
        lines += [
            "",
            "The same models, each held-out patch scored as the mean of its 8 orientations "
            "(test-time augmentation; scoring seconds per fold: "
            + ", ".join(f"{v:g}" for v in tta["wall_seconds"])
            + "):",
            "",
            "| TTA | images | " + " | ".join(METRICS) + " |",
            "|---|---:|" + "---|" * len(METRICS),
            f"| pooled | {tta['n_images']} | "
            + " | ".join(_cell(tta["metrics"][m]) for m in METRICS)
            + " |",
        ]
        lines += _operating_lines(tta, meta["threshold"])
        lines += _context_lines(tta.get("slide_context"))
    if result["warnings"]:
        lines += ["", "Warnings:"] + [f"- {w}" for w in result["warnings"]]
    if meta["synthetic_data"]:
        lines += [
            "",
            "Metrics on SYNTHETIC data: they show the folds run, not how a model does on tissue.",
        ]
    return "\n".join(lines) + "\n"


def _operating_lines(pooled: dict[str, Any], threshold: float) -> list[str]:
    operating = pooled.get("operating") or {}
    if not operating:
        return []
    folds = len(next(iter(operating.values()))["thresholds"])
    lines = [
        "",
        "Pooled at operating thresholds chosen on each fold's eval patients (never its test "
        "patients) and applied to its test patients (AUC does not depend on the threshold):",
        "",
        "| threshold rule | per-fold thresholds | " + " | ".join(METRICS[1:]) + " |",
        "|---|---|" + "---|" * (len(METRICS) - 1),
        f"| fixed {threshold} | "
        + ", ".join([f"{threshold:g}"] * folds)
        + " | "
        + " | ".join(_cell(pooled["metrics"][m]) for m in METRICS[1:])
        + " |",
    ]
    for rule, entry in operating.items():
        lines.append(
            f"| {RULE_TITLES.get(rule, rule)} | "
            + ", ".join(f"{t:.3f}" for t in entry["thresholds"])
            + " | "
            + " | ".join(_cell(entry["metrics"][m]) for m in METRICS[1:])
            + " |"
        )
    return lines


def _context_lines(context: dict[str, Any] | None) -> list[str]:
    if not context:
        return []
    lines = [
        "",
        "Slide context (each patch's probability averaged with its slide neighbours', Gaussian "
        "width chosen on each fold's eval patients: "
        + ", ".join(f"{v:g}" for v in context["sigmas"])
        + " grid steps; not comparable with the per-patch references):",
        "",
        "| slide context | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
        "| scores, 0.5 | " + " | ".join(_cell(context["metrics"][m]) for m in METRICS) + " |",
    ]
    for rule, entry in context["operating"].items():
        lines.append(
            f"| {RULE_TITLES.get(rule, rule)} | n/a | "
            + " | ".join(_cell(entry["metrics"][m]) for m in METRICS[1:])
            + " |"
        )
    return lines


def write_outputs(result: dict[str, Any], out_dir: str) -> dict[str, str]:
    """cv.json, cv.md, roc.png (one curve per fold and the pooled one), index.html."""
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from components.evaluation.statistics import roc_curve

    paths = {
        name: os.path.join(out_dir, name) for name in ("cv.json", "cv.md", "roc.png", "index.html")
    }
    with open(paths["cv.json"], "w") as handle:
        json.dump(result, handle, indent=1, default=float)
    markdown = render_markdown(result)
    with open(paths["cv.md"], "w") as handle:
        handle.write(markdown)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    for row in result["folds"]:
        curve = roc_curve(np.asarray(row["labels"]), np.asarray(row["scores"]))
        ax.plot(
            curve["fpr"],
            curve["tpr"],
            lw=1,
            label=f"fold {row['fold']} (AUC {_cell(row['metrics']['auc'])})",
        )
    y = np.concatenate([r["labels"] for r in result["folds"]])
    s = np.concatenate([r["scores"] for r in result["folds"]])
    curve = roc_curve(y, s)
    ax.plot(
        curve["fpr"],
        curve["tpr"],
        "k",
        lw=2,
        label=f"pooled (AUC {_cell(result['pooled']['metrics']['auc'])})",
    )
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC per held-out fold")
    ax.legend(loc="lower right", fontsize=7)
    fig.savefig(paths["roc.png"], dpi=90, bbox_inches="tight")
    plt.close(fig)
    with open(paths["roc.png"], "rb") as handle:
        roc_b64 = base64.b64encode(handle.read()).decode("ascii")
    table = html.escape(markdown)
    with open(paths["index.html"], "w") as handle:
        handle.write(
            f"<!doctype html><meta charset=utf-8><title>Cross-validation</title>"
            f"<h1>Patient-level cross-validation</h1><p><b>{html.escape(contract.RESEARCH_ONLY)}</b></p>"
            f"<pre>{table}</pre><img alt='ROC per fold' src='data:image/png;base64,{roc_b64}'>"
        )
    return paths


# --- the verb -----------------------------------------------------------------------------
def cmd_cv(args: argparse.Namespace) -> int:
    from breastdx_core import configs
    from pipeline import console as cli  # not breastdx_cli.main: it imports this module

    try:
        config = configs.load(
            task=args.task,
            data_root=args.data_root,
            layout=args.layout,
            workdir=args.workdir,
            backbone=args.backbone,
            weights=args.weights,
            epochs=args.epochs,
            train_steps=args.train_steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            stain_jitter=args.stain_jitter,
            max_train_minutes=args.max_train_minutes,
            seed=args.seed,
            cv_folds=args.folds,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log_file = os.path.join(config.workdir, "logs", f"cv-{time.strftime('%Y%m%d-%H%M%S')}.log")
    cli.setup_logging(log_file, args.verbose)
    if args.data_root is None and "BREASTDX_DATA_ROOT" not in os.environ:
        cli.ensure_synthetic(config)
    from pipeline import preflight

    # A wrong data root (a PreflightError: one line, exit 2, in breastdx_cli.main) before
    # the run's TensorFlow, TFX and ML Metadata load.
    preflight.check_root(config.data_root, config.task_spec, config.layout)
    try:
        result = cross_validate(
            config,
            config.evaluation.cv_folds,
            args.out,
            args.eval_fraction,
            keep_models=args.keep_models,
            score_tta=args.score_tta,
        )
    except CvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(result["files"]["cv.md"]) as handle:
        print(handle.read())
    print(f"report: {result['files']['index.html']}")
    return 0


def add_parser(verbs) -> None:
    """Adds ``cv`` to `breastdx`'s sub-parsers."""
    parser = verbs.add_parser(
        "cv",
        help="patient-level K-fold cross-validation through the Trainer module",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--folds", type=int, help="K patient-disjoint folds (default from configs: cv_folds)"
    )
    cli_options.add_data_options(parser)
    cli_options.add_model_options(parser)
    parser.add_argument("--epochs", type=int, help="passes over each fold's train split")
    parser.add_argument(
        "--train-steps", type=int, help="a step budget instead of whole epochs (0: epochs)"
    )
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument(
        "--stain-jitter", type=float, help="HED jitter strength on the train split (0: off)"
    )
    parser.add_argument(
        "--max-train-minutes", type=float, help="wall-time budget per fold (0: none)"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--eval-fraction",
        type=float,
        default=0.2,
        help="share of each fold's training patients held out for early stopping and calibration",
    )
    parser.add_argument("--out", help="output folder (default <workdir>/reports/cv)")
    parser.add_argument(
        "--keep-models", action="store_true", help="keep each fold's exported SavedModel"
    )
    parser.add_argument(
        "--score-tta",
        action="store_true",
        help="also score each fold's held-out patients with the 8 dihedral orientations averaged "
        "(test-time augmentation) by the same model: both sets of figures from one training "
        "(8x the scoring time; ignored where the settings' tta is on)",
    )
    cli_options.add_verbose_option(parser)
    parser.set_defaults(func=cmd_cv)
