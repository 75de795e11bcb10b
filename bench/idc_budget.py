"""Which IDC backbone, input size and budget: candidates trained for equal CPU time on real tissue.

    python bench/idc_budget.py --data-root ../shared/data/idc-real-dev --stage screen \
        --cpu-minutes 5 --out docs/results/data/idc-budget-screen.json
    python bench/idc_budget.py --data-root ../shared/data/idc-real-dev --stage cv --folds 3 \
        --candidates lite0@128 --cpu-minutes 12 --tta --out docs/results/data/idc-budget-cv-fold0.json

Users wait for wall time, not steps, so every candidate gets the same budget of this
process's **CPU time** (`training.WallTimeBudget`'s ``cpu_minutes``): on a machine shared
with others wall time says more about the neighbours than the model, while CPU time is
what the candidate cost (on an otherwise idle 2-core machine, 2 CPU-seconds per
wall-second). Candidates are ``<backbone>@<input side>``: ``vgg16`` from random weights,
``lite0``/``lite1``/``lite2`` (EfficientNet-Lite) from ImageNet. The Transform's 64x64
output is what every candidate reads; a larger side is a resize inside the model
(``backbone_input_size``), so the Transform graph stays one.

The same pieces as the Trainer: `build_model`, the fit loop with its callbacks and
fine-tuning phases (`training.train_model`), its augmentation (`data._augmenter`), class
weights and batch-norm recalibration; the images decoded once by the Transform module's
`decode_image`. Not the TFX pipeline itself (no temperature scaling: the thresholds below
are chosen on eval patients, which a monotone rescaling does not change).

``--stage screen``: one patient split (lab/cv.py `assign_folds` fold 0 as test, a few
other patients as eval, the rest train), every candidate once, at most
``--test-per-patient`` test patches per patient. ``--stage cv``: patient-level K-fold, all
test patches, pooled with patient-bootstrap CIs. Reported per candidate: test AUC, and at
thresholds chosen on the eval patients (never the test ones) balanced accuracy (max
balanced accuracy rule) and F1, raw and at the references' 28.4 % prevalence (max F1
rule); with ``--tta`` the same for the 8 dihedral orientations averaged, and the CPU
milliseconds per patch of scoring each way; slide context (`breastdx_core.slide_context`,
its width chosen on the eval patients) beside the per-patch figures. Results are written
after every candidate, and a rerun with the same ``--out`` skips what is there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCREEN = (
    "vgg16@64",
    "lite0@64",
    "lite0@96",
    "lite0@128",
    "lite0@224",
    "lite1@64",
    "lite1@96",
    "lite1@128",
    "lite1@224",
    "lite2@64",
    "lite2@96",
    "lite2@128",
    "lite2@224",
)
BACKBONE_NAMES = {
    "vgg16": "vgg16",
    "lite0": "efficientnet_lite0",
    "lite1": "efficientnet_lite1",
    "lite2": "efficientnet_lite2",
}
STEPS_PER_EPOCH = 48  # the callbacks (LR schedule, early stopping) act this often
EVAL_CAP = 768  # eval patches validated each epoch (the threshold choice uses all)
RULES = ("max_balanced_accuracy", "max_f1")
# Set by the candidate's name or the harness, never by a recipe override.
RECIPE_FIXED = ("backbone", "weights", "backbone_input_size", "epochs", "max_train_cpu_minutes")


def parse_candidate(spec: str) -> tuple[str, str | None, int]:
    """``lite0@128`` -> ("efficientnet_lite0", "imagenet", 128); vgg16 trains from random weights.
    Recipe overrides after the side (``lite0@128:unfreeze_last=1000``) are `recipe`'s."""
    name, _, side = spec.split(":")[0].partition("@")
    if name not in BACKBONE_NAMES or not side.isdigit():
        raise SystemExit(
            f"candidate {spec!r}: expected <{'|'.join(BACKBONE_NAMES)}>@<side>[:field=value...], "
            "e.g. lite0@128 or lite0@128:unfreeze_last=1000"
        )
    recipe(spec)
    return BACKBONE_NAMES[name], (None if name == "vgg16" else "imagenet"), int(side)


def recipe(spec: str) -> dict[str, Any]:
    """The training fields a candidate sets beyond backbone and side, typed as the settings
    declare them: ``lite0@128:unfreeze_last=1000:stain_jitter=0.05`` ->
    {"unfreeze_last": 1000, "stain_jitter": 0.05}. The fine-tuning depth, learning rate,
    batch size or augmentation the screen's numbers point to, on the same harness."""
    from breastdx_core.settings import TrainingSettings

    fields = {f.name: f for f in dataclasses.fields(TrainingSettings)}
    out: dict[str, Any] = {}
    for item in spec.split(":")[1:]:
        key, _, value = item.partition("=")
        if key not in fields or not value or key in RECIPE_FIXED:
            raise SystemExit(
                f"candidate {spec!r}: {key!r} is not a training field a candidate may set "
                f"(not {', '.join(RECIPE_FIXED)}; fields: breastdx_core/settings.py "
                "TrainingSettings)"
            )
        kind = type(getattr(TrainingSettings(), key))
        if kind is bool:
            out[key] = value.lower() in ("1", "true", "yes", "on")
        elif kind in (int, float):
            out[key] = kind(float(value))
        elif kind is str:
            out[key] = value
        else:
            raise SystemExit(f"candidate {spec!r}: {key} ({kind.__name__}) cannot be set here")
    return out


def idc_files(root: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every PNG of a Kaggle IDC tree (<patient>/<0|1>/*.png): paths, labels, patient ids."""
    paths, labels, groups = [], [], []
    for patient in sorted(os.listdir(root)):
        for label in ("0", "1"):
            folder = os.path.join(root, patient, label)
            if os.path.isdir(folder):
                for name in sorted(os.listdir(folder)):
                    if name.lower().endswith(".png"):
                        paths.append(os.path.join(folder, name))
                        labels.append(int(label))
                        groups.append(patient)
    if not paths:
        raise SystemExit(f"no <patient>/<0|1>/*.png under {root}")
    return paths, np.array(labels, dtype=np.int64), np.array(groups)


def decode_all(paths: Sequence[str]) -> np.ndarray:
    """The Transform module's decode of every file: float16 [n, 64, 64, 3] in [0, 1]."""
    import tensorflow as tf

    from breastdx_core import contract
    from components.transform.transform_module import decode_image

    image = contract.get_task("idc").image
    files = tf.data.Dataset.from_tensor_slices(list(paths)).map(tf.io.read_file)
    images = files.map(
        lambda b: decode_image(b, image.model_size, image.native_size),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).batch(512)
    return np.concatenate([batch.numpy().astype(np.float16) for batch in images])


def score(
    model, images: np.ndarray, tta: bool, batch: int = 128
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Positive-class probabilities, plain and (``tta``) averaged over the 8 orientations,
    with the CPU milliseconds per patch each way."""
    import tensorflow as tf

    from components.trainer.export import dihedral_views

    plain, averaged = [], []
    started = time.process_time()
    for i in range(0, len(images), batch):
        plain.append(
            model(tf.constant(images[i : i + batch], tf.float32), training=False).numpy()[:, 1]
        )
    cost = {"plain_cpu_ms_per_patch": 1000 * (time.process_time() - started) / max(1, len(images))}
    if tta:
        started = time.process_time()
        for i in range(0, len(images), batch):
            views = dihedral_views(tf.constant(images[i : i + batch], tf.float32))
            averaged.append(
                np.mean([model(v, training=False).numpy()[:, 1] for v in views], axis=0)
            )
        cost["tta_cpu_ms_per_patch"] = 1000 * (time.process_time() - started) / max(1, len(images))
    return np.concatenate(plain), (np.concatenate(averaged) if tta else None), cost


def train_candidate(
    spec: str,
    images: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    evaluation: np.ndarray,
    cpu_minutes: float,
    seed: int,
    batch_size: int,
) -> tuple[Any, dict[str, Any]]:
    """Builds and trains one candidate for ``cpu_minutes`` of CPU time; (model, budget record)."""
    import tensorflow as tf
    import tf_keras as keras

    from breastdx_core import configs
    from components.batchnorm import recalibrate_batchnorm
    from components.trainer import data as data_lib
    from components.trainer import model as model_lib
    from components.trainer import training
    from components.trainer.sections import TrainerSettings

    backbone, weights, side = parse_candidate(spec)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    base = configs.load(env={}, task="idc", data_root="/nonexistent-real-data")
    epochs = 400  # more than any budget reaches: the CPU clock stops training
    settings = (
        TrainerSettings.of(base)
        .with_task(seed=seed)
        .with_training(
            backbone=backbone,
            weights=weights,
            backbone_input_size=side,
            batch_size=batch_size,
            epochs=epochs,
            max_train_cpu_minutes=cpu_minutes,
        )
    )
    if weights:
        # The pretrained recipe the BUSI preset uses (breastdx_core/configs.py TASK_DEFAULTS).
        settings = settings.with_training(
            learning_rate=1e-3, unfreeze_last=12, fine_tune_head_fraction=0.25
        )
    settings = settings.with_training(**recipe(spec))
    batch_size = settings.training.batch_size
    augmenter = data_lib.train_augmentation(settings)
    x_train = images[train]
    y_train = labels[train]

    def batches(index: np.ndarray, y: np.ndarray, shuffle: bool, augment: bool, repeat: bool):
        dataset = tf.data.Dataset.from_tensor_slices((index, y))
        if shuffle:
            dataset = dataset.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        source = images

        def load(i, label):
            x = tf.numpy_function(lambda j: source[j].astype(np.float32), [i], tf.float32)
            x.set_shape([None, *source.shape[1:]])
            if augment and augmenter is not None:
                x = augmenter(x)
            return {"image": x}, label

        return dataset.batch(batch_size).map(load, num_parallel_calls=2).prefetch(2)

    rng = np.random.default_rng(seed)
    eval_index = (
        evaluation
        if len(evaluation) <= EVAL_CAP
        else np.sort(rng.choice(evaluation, EVAL_CAP, replace=False))
    )
    train_ds = batches(train, y_train, True, True, True)
    eval_ds = batches(eval_index, labels[eval_index], False, False, False)
    counts = np.bincount(y_train, minlength=2)
    model = model_lib.build_model(settings)
    cpu0, wall0 = time.process_time(), time.time()
    _, report, _ = training.train_model(
        model,
        train_ds,
        eval_ds,
        settings,
        epochs * STEPS_PER_EPOCH,
        None,
        class_weight=data_lib.class_weights(counts),
        train_images=len(train),
    )
    if weights is None:
        plain = batches(train[: 16 * batch_size], y_train[: 16 * batch_size], False, False, False)
        recalibrate_batchnorm(model, [f["image"] for f, _ in plain])
    budget = report["budget"]
    del x_train
    return model, {
        "train_cpu_s": round(time.process_time() - cpu0, 1),
        "train_wall_s": round(time.time() - wall0, 1),
        "images_seen": budget.get("images_seen"),
        "steps": budget.get("steps_trained"),
        "stopped_by": budget.get("stopped_by"),
        "params": int(model.count_params()),
    }


def evaluate(labels_eval, eval_scores, labels_test, test_scores, test_groups) -> dict[str, Any]:
    """Test AUC, and balanced accuracy / F1 / F1 at 28.4 % at the eval patients' thresholds."""
    from breastdx_core import metrics
    from lab import cv

    out: dict[str, Any] = {"auc": metrics.roc_auc(labels_test, test_scores)}
    for rule in RULES:
        threshold = cv.choose_threshold(labels_eval, eval_scores, rule)
        m = metrics.binary_metrics(labels_test, test_scores, threshold)
        out[rule] = {
            "threshold": threshold,
            "sensitivity": m["sensitivity"],
            "specificity": m["specificity"],
            "balanced_accuracy": (m["sensitivity"] + m["specificity"]) / 2,
            "f1": metrics.f1_at_prevalence(
                labels_test, test_scores, threshold, float(np.mean(labels_test))
            ),
            "f1_at_reference_prevalence": metrics.f1_at_prevalence(
                labels_test, test_scores, threshold
            ),
        }
    return out


def one_split(
    spec: str,
    images,
    labels,
    groups,
    xy,
    test: Sequence[str],
    evaluation: Sequence[str],
    args: argparse.Namespace,
    seed: int,
    cap_test: int,
) -> dict[str, Any]:
    """Trains ``spec`` on the patients outside ``test`` and ``evaluation``; scores both."""
    from breastdx_core import slide_context

    rng = np.random.default_rng(seed)
    is_test, is_eval = np.isin(groups, test), np.isin(groups, evaluation)
    train = np.flatnonzero(~is_test & ~is_eval)
    eval_index = np.flatnonzero(is_eval)
    test_index = np.flatnonzero(is_test)
    if cap_test:  # the screen: fewer patches scored, every patient still in
        if len(eval_index) > EVAL_CAP:
            eval_index = np.sort(rng.choice(eval_index, EVAL_CAP, replace=False))
        test_index = np.sort(
            np.concatenate(
                [
                    idx if len(idx) <= cap_test else rng.choice(idx, cap_test, replace=False)
                    for idx in (np.flatnonzero(groups == p) for p in test)
                ]
            )
        )
    model, record = train_candidate(
        spec, images, labels, train, eval_index, args.cpu_minutes, seed, args.batch_size
    )
    cpu0 = time.process_time()
    eval_plain, eval_tta, _ = score(model, images[eval_index], args.tta)
    test_plain, test_tta, cost = score(model, images[test_index], args.tta)
    record.update(cost)
    record["score_cpu_s"] = round(time.process_time() - cpu0, 1)
    y_eval, y_test = labels[eval_index], labels[test_index]
    g_eval, g_test = groups[eval_index], groups[test_index]
    out = {
        **record,
        "test_patients": list(test),
        "eval_patients": list(evaluation),
        "n_train": int(len(train)),
        "n_eval": int(len(eval_index)),
        "n_test": int(len(test_index)),
        "labels": y_test.tolist(),
        "groups": g_test.tolist(),
        "scores": test_plain.tolist(),
        "plain": evaluate(y_eval, eval_plain, y_test, test_plain, g_test),
    }
    if args.tta:
        out["tta_scores"] = test_tta.tolist()
        out["tta"] = evaluate(y_eval, eval_tta, y_test, test_tta, g_test)
    if not cap_test:
        # Slide context needs every patch of a slide; its width is chosen on the eval patients.
        best = eval_tta if args.tta and out["tta"]["auc"] >= out["plain"]["auc"] else eval_plain
        test_best = test_tta if best is eval_tta else test_plain
        chosen = slide_context.choose_sigma(
            y_eval, best, xy[eval_index, 0], xy[eval_index, 1], g_eval
        )
        ctx_eval = slide_context.slide_context(
            best, xy[eval_index, 0], xy[eval_index, 1], g_eval, chosen["sigma"]
        )
        ctx_test = slide_context.slide_context(
            test_best, xy[test_index, 0], xy[test_index, 1], g_test, chosen["sigma"]
        )
        out["slide_context"] = {
            "sigma": chosen["sigma"],
            "eval_auc_by_sigma": chosen["auc"],
            "on": "tta" if best is eval_tta else "plain",
            **evaluate(y_eval, ctx_eval, y_test, ctx_test, g_test),
        }
        out["slide_context_scores"] = ctx_test.tolist()
    import tf_keras as keras

    del model
    keras.backend.clear_session()
    return out


def pooled(rows: Sequence[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    """Metrics over every fold's test patches, each fold's patches called at that fold's
    own eval-chosen threshold, with 95 % patient-bootstrap CIs."""
    from breastdx_core import metrics

    def ci(fn, y, s, g):
        value = fn(y, s)
        interval = metrics.patient_bootstrap(y, s, g, metric=fn, resamples=resamples, seed=seed)
        return {"value": float(value), "ci95": interval}

    y = np.concatenate([r["labels"] for r in rows]).astype(int)
    g = np.concatenate([r["groups"] for r in rows])

    def ba(yy, d):
        m = metrics.binary_metrics(yy, d, 0.5)
        return (m["sensitivity"] + m["specificity"]) / 2

    out = {"n_images": int(len(y)), "n_patients": int(len(np.unique(g)))}
    for kind, key in (
        ("plain", "scores"),
        ("tta", "tta_scores"),
        ("slide_context", "slide_context_scores"),
    ):
        if not all(kind in r for r in rows):
            continue
        s = np.concatenate([r[key] for r in rows])
        entry = {"auc_pooled_scores": ci(metrics.roc_auc, y, s, g)}
        for rule in RULES:
            d = np.concatenate(
                [(np.asarray(r[key]) >= r[kind][rule]["threshold"]).astype(float) for r in rows]
            )
            entry[rule] = {
                "balanced_accuracy": ci(ba, y, d, g),
                "f1": ci(
                    lambda yy, dd: metrics.f1_at_prevalence(yy, dd, 0.5, float(np.mean(yy))),
                    y,
                    d,
                    g,
                ),
                "f1_at_reference_prevalence": ci(
                    lambda yy, dd: metrics.f1_at_prevalence(yy, dd, 0.5), y, d, g
                ),
            }
        out[kind] = entry
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--data-root", required=True, help="a Kaggle IDC tree: <patient>/<0|1>/*.png"
    )
    parser.add_argument("--stage", choices=("screen", "cv"), default="screen")
    parser.add_argument(
        "--candidates", nargs="*", default=None, help=f"default: {' '.join(SCREEN)} (screen)"
    )
    parser.add_argument(
        "--cpu-minutes", type=float, default=5.0, help="training budget per model, process CPU time"
    )
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--only-folds", type=int, nargs="*", default=None)
    parser.add_argument("--eval-fraction", type=float, default=0.25)
    parser.add_argument(
        "--test-per-patient",
        type=int,
        default=300,
        help="screen: test patches per patient (0: all)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--tta", action="store_true", help="also score the 8 dihedral orientations averaged"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", required=True, help="JSON results (resumed if it exists)")
    parser.add_argument("--render", action="store_true", help="print the tables of --out and exit")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.out) as handle:
            print(render(json.load(handle)))
        return 0

    from breastdx_core import slide_context
    from lab import cv

    candidates = args.candidates or list(SCREEN)
    for spec in candidates:
        parse_candidate(spec)
    paths, labels, groups = idc_files(args.data_root)
    xy = np.array(
        [slide_context.patch_xy(os.path.basename(p)) or (np.nan, np.nan) for p in paths],
        dtype=float,
    )
    results: dict[str, Any] = {}
    if os.path.exists(args.out):
        with open(args.out) as handle:
            results = json.load(handle)
    results.setdefault("meta", {}).update(
        {
            "data_root": os.path.abspath(args.data_root),
            "images": int(len(labels)),
            "patients": int(len(set(groups))),
            "positive_images": int(labels.sum()),
            "stage": args.stage,
            "cpu_minutes": args.cpu_minutes,
            "batch_size": args.batch_size,
            "folds": args.folds,
            "seed": args.seed,
            "test_per_patient": args.test_per_patient if args.stage == "screen" else 0,
            "budget": "process CPU time (time.process_time) per model's training; 2 CPU-s per wall-s on an idle 2-core "
            "machine",
            "research_only": "research use only, not a diagnosis",
        }
    )
    results.setdefault("candidates", {})
    started = time.time()
    images = decode_all(paths)
    print(f"decoded {len(images)} images in {time.time() - started:.0f} s", flush=True)
    assignment = cv.assign_folds(labels, groups, args.folds, args.seed)
    classes = cv._patient_classes(labels, groups)
    folds = [0] if args.stage == "screen" else (args.only_folds or list(range(args.folds)))
    for spec in candidates:
        entry = results["candidates"].setdefault(spec, {"folds": {}})
        for k in folds:
            if str(k) in entry["folds"]:
                continue
            test = assignment[k]
            rest = [p for p in sorted(classes) if p not in test]
            evaluation = cv.eval_patients(rest, classes, args.eval_fraction, args.seed + k)
            print(f"{spec} fold {k}: test {test}, eval {evaluation}", flush=True)
            row = one_split(
                spec,
                images,
                labels,
                groups,
                xy,
                test,
                evaluation,
                args,
                args.seed + k,
                args.test_per_patient if args.stage == "screen" else 0,
            )
            entry["folds"][str(k)] = row
            print(
                f"{spec} fold {k}: AUC {row['plain']['auc']:.3f}, "
                f"BA {row['plain']['max_balanced_accuracy']['balanced_accuracy']:.3f}, "
                f"F1@28.4% {row['plain']['max_f1']['f1_at_reference_prevalence']:.3f}; "
                f"{row['images_seen']} images in {row['train_cpu_s']} CPU-s ({row['stopped_by']})",
                flush=True,
            )
            if args.stage == "cv" and len(entry["folds"]) == args.folds:
                entry["pooled"] = pooled(
                    [entry["folds"][str(i)] for i in range(args.folds)], args.resamples, args.seed
                )
            with open(args.out + ".tmp", "w") as handle:
                json.dump(results, handle, indent=1, default=float)
            os.replace(args.out + ".tmp", args.out)
    print(render(results))
    return 0


def render(results: dict[str, Any]) -> str:
    """A markdown table of the results so far."""
    lines = [
        "| candidate | fold | images seen | train CPU-s | stopped by | test AUC | BA (eval max-BA thr.) | "
        "F1 raw / at 28.4 % (eval max-F1 thr.) | TTA AUC | scoring CPU ms/patch (plain / TTA) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for spec, entry in results.get("candidates", {}).items():
        for k, r in sorted(entry["folds"].items()):
            p = r["plain"]
            tta = f"{r['tta']['auc']:.3f}" if "tta" in r else ""
            cost = f"{r['plain_cpu_ms_per_patch']:.1f}" + (
                f" / {r['tta_cpu_ms_per_patch']:.1f}" if "tta" in r else ""
            )
            lines.append(
                f"| {spec} | {k} | {r['images_seen']} | {r['train_cpu_s']} | {r['stopped_by']} | "
                f"{p['auc']:.3f} | {p['max_balanced_accuracy']['balanced_accuracy']:.3f} | "
                f"{p['max_f1']['f1']:.3f} / {p['max_f1']['f1_at_reference_prevalence']:.3f} | {tta} | {cost} |"
            )
    pooled_rows = [
        (spec, entry["pooled"])
        for spec, entry in results.get("candidates", {}).items()
        if entry.get("pooled")
    ]
    if pooled_rows:

        def cell(x):
            ci = x.get("ci95")
            return (
                f"{x['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
                if ci
                else f"{x['value']:.3f}"
            )

        lines += [
            "",
            "Pooled over the folds (each fold's patches at its own eval-chosen thresholds; 95 % CIs by "
            "patient bootstrap):",
            "",
            "| candidate | scores | patients | images | AUC (pooled scores) | balanced accuracy (max-BA thr.) "
            "| F1 (max-F1 thr.) | F1 at 28.4 % (max-F1 thr.) |",
            "|---|---|---:|---:|---|---|---|---|",
        ]
        for spec, pooled_entry in pooled_rows:
            for kind in ("plain", "tta", "slide_context"):
                if kind not in pooled_entry:
                    continue
                e = pooled_entry[kind]
                lines.append(
                    f"| {spec} | {kind} | {pooled_entry['n_patients']} | {pooled_entry['n_images']} | "
                    f"{cell(e['auc_pooled_scores'])} | "
                    f"{cell(e['max_balanced_accuracy']['balanced_accuracy'])} | "
                    f"{cell(e['max_f1']['f1'])} | {cell(e['max_f1']['f1_at_reference_prevalence'])} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
