"""Training throughput of VGG16 at the seed study's 224x224 input against the project's 64x64.

    python bench/throughput.py [--sizes 64 224] [--steps 4] [--auc-steps 0]

Same model builder as the Trainer (components/trainer/model.py `build_model`, the
pipeline's default head, optimizer and batch size from breastdx_core/configs.py), same
synthetic IDC patches (pipeline/synthetic.py), decoded and fitted to each size by the
Transform module's own `decode_image` (50x50 patches padded to their native size, then
resized). The images are decoded once, before timing: the figures are the model's
train-step and predict throughput, not the input pipeline's. Per size: one warm-up step
(graph tracing), then ``--steps`` timed `train_on_batch` steps and as many timed
`predict_on_batch` calls; images/s = steps x batch / seconds.

With ``--auc-steps K`` both sizes also train K steps from the same initial seed on
the same patients' patches and are scored on held-out patients: ROC AUC with a 95 %
patient-bootstrap CI (synthetic data: a check that the small input loses nothing on
this data at equal steps, not a claim about real tissue).

With ``--data-root DIR`` (a Kaggle IDC tree: <patient>/<0|1>/*.png) the AUC comparison
runs on real tissue instead, as patient-level cross-validation: ``--folds`` patient-disjoint
folds (lab/cv.py `assign_folds`); in each, both sizes start from the same initial weights
(the head is global-average-pooled, so every weight has the same shape at both sizes) and
train K steps on the same sequence of batches drawn from the other folds' patients, then
score the same held-out patches (at most ``--test-per-patient`` per patient, drawn at
random). Reported: per fold, each size's AUC and the paired difference (small minus large
input, same patches) with a 95 % CI resampling the fold's patients; the mean of the folds'
differences with a CI from a bootstrap of each fold's patients (the comparison: every AUC
within one model's scores); then AUCs pooled over the folds (which also mix the folds' score
scales). ``--scores-out`` keeps every fold's scores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NATIVE = (50, 50)


def ratio(rates: dict[int, float], fast: int, slow: int) -> float:
    """How many times more images/s size ``fast`` gives than size ``slow``."""
    return rates[fast] / rates[slow]


def patches(
    patients: int, per_patient: int, seed: int
) -> tuple[list[bytes], np.ndarray, list[str]]:
    """Encoded synthetic H&E patches (PNG bytes), labels and patient ids; ~28 % positive."""
    from PIL import Image

    from pipeline import synthetic

    encoded, labels, groups = [], [], []
    for p in range(patients):
        rng = np.random.default_rng([seed, p])
        for _ in range(per_patient):
            label = int(rng.random() < synthetic.POSITIVE_RATE)
            buffer = io.BytesIO()
            Image.fromarray(synthetic.render_patch(rng, bool(label))).save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
            labels.append(label)
            groups.append(f"p{seed}-{p}")
    return encoded, np.array(labels, dtype=np.int64), groups


def decode(encoded: Sequence[bytes], size: int) -> np.ndarray:
    """The Transform module's decode + fit for every image: float32 [n, size, size, 3] in [0, 1]."""
    import tensorflow as tf

    from components.transform.transform_module import decode_image

    return np.stack([decode_image(tf.constant(e), (size, size), NATIVE).numpy() for e in encoded])


def build(size: int, seed: int):
    import tensorflow as tf

    from components.trainer import model as model_lib

    tf.keras.utils.set_random_seed(seed)
    settings = build_settings().with_task(model_size=(size, size))
    return model_lib.build_model(settings), int(settings.training.batch_size)


def throughput(
    size: int, steps: int, images: np.ndarray, labels: np.ndarray, seed: int
) -> dict[str, float]:
    model, batch = build(size, seed)
    x, y = images[:batch], labels[:batch]
    started = time.perf_counter()
    model.train_on_batch(x, y)  # tracing + the first step
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    train_s = time.perf_counter() - started
    model.predict_on_batch(x)
    started = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    predict_s = time.perf_counter() - started
    return {
        "batch": batch,
        "first_step_s": first,
        "step_s": train_s / steps,
        "train_ips": steps * batch / train_s,
        "predict_ips": steps * batch / predict_s,
        "params": float(model.count_params()),
    }


def auc_at_steps(
    size: int,
    steps: int,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    test_groups: list[str],
    seed: int,
) -> dict[str, float]:
    from breastdx_core import metrics

    model, batch = build(size, seed)
    x, y = train
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(steps):
        pick = rng.integers(0, len(y), batch)
        model.train_on_batch(x[pick], y[pick])
    train_s = time.perf_counter() - started
    scores = model.predict(test[0], batch_size=batch, verbose=0)[:, 1]
    ci = metrics.patient_bootstrap(test[1], scores, test_groups, resamples=1000, seed=seed)
    return {
        "auc": metrics.roc_auc(test[1], scores),
        "low": ci["low"] if ci else float("nan"),
        "high": ci["high"] if ci else float("nan"),
        "train_s": train_s,
        "n_test": len(test[1]),
        "test_patients": len(set(test_groups)),
    }


def idc_files(root: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every PNG of a Kaggle IDC tree (<patient>/<0|1>/*.png): paths, labels, patient ids."""
    paths, labels, groups = [], [], []
    for patient in sorted(os.listdir(root)):
        for label in ("0", "1"):
            folder = os.path.join(root, patient, label)
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if name.lower().endswith(".png"):
                    paths.append(os.path.join(folder, name))
                    labels.append(int(label))
                    groups.append(patient)
    if not paths:
        raise SystemExit(f"no <patient>/<0|1>/*.png under {root}")
    return paths, np.array(labels, dtype=np.int64), np.array(groups)


def read_all(paths: Sequence[str]) -> list[bytes]:
    out = []
    for path in paths:
        with open(path, "rb") as f:
            out.append(f.read())
    return out


def paired_auc_difference(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: np.ndarray,
    resamples: int,
    seed: int,
) -> dict[str, float]:
    """AUC(a) - AUC(b) on the same images, with a 95 % CI resampling whole patients."""
    from breastdx_core import metrics

    both = np.stack([scores_a, scores_b], axis=1)
    difference = lambda y, s: metrics.roc_auc(y, s[:, 0]) - metrics.roc_auc(y, s[:, 1])  # noqa: E731
    ci = metrics.patient_bootstrap(
        labels, both, groups, metric=difference, resamples=resamples, seed=seed
    )
    return {
        "difference": difference(labels, both),
        "low": ci["low"] if ci else float("nan"),
        "high": ci["high"] if ci else float("nan"),
    }


def mean_fold_difference(
    folds: Sequence[dict[str, np.ndarray]], resamples: int, seed: int, level: float = 0.95
) -> dict[str, float]:
    """The mean over folds of each fold's paired AUC difference (a - b on the same patches),
    with a percentile CI from a bootstrap stratified by fold: each resample draws every
    fold's test patients with replacement, recomputes that fold's difference and averages
    the folds. Each AUC stays within one model's scores (the folds' models score on scales
    of their own), so unlike pooling it compares ranking only.

    Args:
        folds: per fold {"labels", "a", "b", "groups"} (arrays over its test patches).

    Returns:
        {"difference", "low", "high", "resamples"} (resamples where every fold's AUC was defined).
    """
    from breastdx_core import metrics

    def diff(y, a, b):
        return metrics.roc_auc(y, a) - metrics.roc_auc(y, b)

    point = float(np.mean([diff(f["labels"], f["a"], f["b"]) for f in folds]))
    members = []
    for f in folds:
        groups = np.asarray(f["groups"])
        members.append([np.flatnonzero(groups == p) for p in np.unique(groups)])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        per_fold = []
        for f, mine in zip(folds, members):
            index = np.concatenate([mine[i] for i in rng.integers(0, len(mine), len(mine))])
            per_fold.append(diff(f["labels"][index], f["a"][index], f["b"][index]))
        if not np.any(np.isnan(per_fold)):
            values.append(float(np.mean(per_fold)))
    tail = (1 - level) / 2 * 100
    low, high = (
        np.percentile(values, [tail, 100 - tail]) if values else (float("nan"), float("nan"))
    )
    return {"difference": point, "low": float(low), "high": float(high), "resamples": len(values)}


def real_tissue_cv(
    root: str,
    sizes: Sequence[int],
    steps: int,
    folds: int,
    test_per_patient: int,
    seed: int,
    scores_out: str = "",
) -> int:
    """Both sizes, equal steps, patient-level folds on real tissue; prints the tables."""
    from breastdx_core import metrics
    from lab.cv import assign_folds

    paths, labels, groups = idc_files(root)
    fold_patients = assign_folds(labels, groups, folds, seed)
    rng = np.random.default_rng(seed)
    print(
        f"\nReal tissue: {len(paths):,} patches of {len(np.unique(groups))} patients under {root} "
        f"({labels.mean():.1%} positive); {folds} patient-disjoint folds, {steps} steps per size and fold",
        flush=True,
    )
    pooled: dict[int, list[np.ndarray]] = {size: [] for size in sizes}
    pooled_labels, pooled_groups, rows = [], [], []
    for fold, test_patients in enumerate(fold_patients):
        is_test = np.isin(groups, test_patients)
        train_index = np.flatnonzero(~is_test)
        test_index = []
        for patient in test_patients:
            mine = np.flatnonzero(groups == patient)
            test_index.extend(
                sorted(rng.choice(mine, size=min(test_per_patient, len(mine)), replace=False))
            )
        test_index = np.array(test_index)
        batch = int(build_settings().training.batch_size)
        draws = rng.integers(0, len(train_index), (steps, batch))
        batch_bytes = [read_all([paths[train_index[i]] for i in row]) for row in draws]
        batch_labels = [labels[train_index[row]] for row in draws]
        test_bytes = read_all([paths[i] for i in test_index])
        fold_row = {
            "fold": fold,
            "test_patients": len(test_patients),
            "n_test": len(test_index),
            "positives": int(labels[test_index].sum()),
        }
        for size in sizes:
            model, _ = build(size, seed)
            started = time.perf_counter()
            for encoded, y in zip(batch_bytes, batch_labels):
                model.train_on_batch(decode(encoded, size), y)
            train_s = time.perf_counter() - started
            started = time.perf_counter()
            scores = np.concatenate(
                [
                    model.predict_on_batch(decode(test_bytes[i : i + batch], size))[:, 1]
                    for i in range(0, len(test_bytes), batch)
                ]
            )
            predict_s = time.perf_counter() - started
            pooled[size].append(scores)
            fold_row[size] = {
                "auc": metrics.roc_auc(labels[test_index], scores),
                "train_s": train_s,
                "predict_s": predict_s,
            }
            print(
                f"  fold {fold + 1}/{folds}, {size}x{size}: AUC {fold_row[size]['auc']:.3f} on "
                f"{len(test_index)} patches of {len(test_patients)} patients; train {train_s:.0f} s, "
                f"predict {predict_s:.0f} s",
                flush=True,
            )
            del model
        if len(sizes) >= 2:
            small, large = min(sizes), max(sizes)
            fold_row["difference"] = paired_auc_difference(
                labels[test_index],
                pooled[small][-1],
                pooled[large][-1],
                groups[test_index],
                resamples=2000,
                seed=seed,
            )
        pooled_labels.append(labels[test_index])
        pooled_groups.append(groups[test_index])
        rows.append(fold_row)
    y, g = np.concatenate(pooled_labels), np.concatenate(pooled_groups)
    paired = len(sizes) >= 2
    if scores_out:
        with open(scores_out, "w") as f:
            json.dump(
                {
                    "sizes": list(sizes),
                    "steps": steps,
                    "seed": seed,
                    "root": os.path.abspath(root),
                    "folds": [
                        {
                            "labels": lab.tolist(),
                            "groups": [str(x) for x in grp],
                            "scores": {str(s): pooled[s][i].tolist() for s in sizes},
                        }
                        for i, (lab, grp) in enumerate(zip(pooled_labels, pooled_groups))
                    ],
                },
                f,
            )
        print(f"scores of every fold written to {scores_out}", flush=True)
    print(
        "\n| fold | test patients | test patches (positive) | "
        + " | ".join(f"AUC {s} px" for s in sizes)
        + (
            f" | {min(sizes)} - {max(sizes)} px, paired, 95 % CI over the fold's patients |"
            if paired
            else " |"
        )
    )
    print(
        "| ---: | ---: | ---: | "
        + " | ".join("---:" for _ in sizes)
        + (" | ---: |" if paired else " |")
    )
    for row in rows:
        d = row.get("difference")
        print(
            f"| {row['fold'] + 1} | {row['test_patients']} | {row['n_test']} ({row['positives']}) | "
            + " | ".join(f"{row[s]['auc']:.3f}" for s in sizes)
            + (f" | {d['difference']:+.3f} [{d['low']:+.3f} to {d['high']:+.3f}] |" if d else " |")
        )
    if paired:
        small, large = min(sizes), max(sizes)
        m = mean_fold_difference(
            [
                {"labels": lab, "a": pooled[small][i], "b": pooled[large][i], "groups": grp}
                for i, (lab, grp) in enumerate(zip(pooled_labels, pooled_groups))
            ],
            resamples=2000,
            seed=seed,
        )
        print(
            f"\nMean over the {len(rows)} folds of AUC {small} px minus {large} px (paired, same patches): "
            f"{m['difference']:+.3f}, 95 % CI {m['low']:+.3f} to {m['high']:+.3f} (bootstrap of each fold's "
            f"test patients, {m['resamples']} resamples): the comparison",
            flush=True,
        )
    print(
        "\nPooled over the folds' test patches (three models' scores on one scale: this also measures how "
        "their score scales differ, not only ranking; the per-fold rows and their mean are the comparison)"
    )
    print("| input | pooled AUC | 95 % CI (patient bootstrap) | train s (all folds) | s/step |")
    print("| --- | ---: | ---: | ---: | ---: |")
    scores = {size: np.concatenate(pooled[size]) for size in sizes}
    for size in sizes:
        ci = metrics.patient_bootstrap(y, scores[size], g, resamples=2000, seed=seed)
        train_s = sum(row[size]["train_s"] for row in rows)
        print(
            f"| {size}x{size} | {metrics.roc_auc(y, scores[size]):.3f} | {ci['low']:.3f}–{ci['high']:.3f} | "
            f"{train_s:.0f} | {train_s / (steps * len(rows)):.2f} |"
        )
    if len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        d = paired_auc_difference(y, scores[small], scores[large], g, resamples=2000, seed=seed)
        print(
            f"\nAUC {small} px minus {large} px (paired, same patches): {d['difference']:+.3f} "
            f"[{d['low']:+.3f} to {d['high']:+.3f}], n = {len(y)} patches of {len(np.unique(g))} patients"
        )
    return 0


def build_settings():
    """The classifier Trainer's settings of the demo's defaults (`TrainerSettings`)."""
    from breastdx_core import configs
    from components.trainer.sections import TrainerSettings

    return TrainerSettings.of(configs.load(env={}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument(
        "--steps", type=int, default=4, help="timed train steps (and predict calls) per size"
    )
    parser.add_argument(
        "--auc-steps", type=int, default=0, help="also train this many steps per size and score AUC"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--data-root", help="a Kaggle IDC tree: the AUC comparison on real tissue, patient-level CV"
    )
    parser.add_argument(
        "--folds", type=int, default=3, help="patient-disjoint folds (with --data-root)"
    )
    parser.add_argument(
        "--test-per-patient",
        type=int,
        default=150,
        help="held-out patches scored per test patient, drawn at random (with --data-root)",
    )
    parser.add_argument(
        "--scores-out",
        default="",
        help="with --data-root: write every fold's labels, patients "
        "and scores per size to this JSON",
    )
    args = parser.parse_args(argv)
    import tensorflow as tf

    encoded, labels, _ = patches(patients=4, per_patient=16, seed=args.seed)
    print(
        f"VGG16, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, threads intra "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}; load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = {}
    for size in args.sizes:
        results[size] = throughput(size, args.steps, decode(encoded, size), labels, args.seed)
        r = results[size]
        print(
            f"  {size}x{size}: step {r['step_s']:.2f} s, train {r['train_ips']:.1f} images/s, "
            f"predict {r['predict_ips']:.1f} images/s (first step {r['first_step_s']:.1f} s)",
            flush=True,
        )
    print("\n| input | batch | s/step | train images/s | predict images/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for size, r in results.items():
        print(
            f"| {size}x{size} | {r['batch']} | {r['step_s']:.2f} | {r['train_ips']:.1f} | {r['predict_ips']:.1f} |"
        )
    if len(results) >= 2:
        small, large = min(results), max(results)
        print(
            f"\n{small} px vs {large} px: {ratio({s: r['train_ips'] for s, r in results.items()}, small, large):.1f}x "
            f"train images/s, {ratio({s: r['predict_ips'] for s, r in results.items()}, small, large):.1f}x "
            f"predict images/s (pixels: {(large / small) ** 2:.1f}x)"
        )
    if args.auc_steps and args.data_root:
        return real_tissue_cv(
            args.data_root,
            args.sizes,
            args.auc_steps,
            args.folds,
            args.test_per_patient,
            args.seed,
            args.scores_out,
        )
    if args.auc_steps:
        train_x, train_y, _ = patches(patients=24, per_patient=24, seed=args.seed + 1)
        test_x, test_y, test_groups = patches(patients=12, per_patient=25, seed=args.seed + 2)
        print(
            f"\nAUC after {args.auc_steps} steps (synthetic: {len(train_y)} train patches of 24 patients, "
            f"{len(test_y)} test patches of 12 other patients)"
        )
        print("| input | AUC | 95 % CI (patient bootstrap) | training wall |")
        print("| --- | ---: | ---: | ---: |")
        for size in args.sizes:
            r = auc_at_steps(
                size,
                args.auc_steps,
                (decode(train_x, size), train_y),
                (decode(test_x, size), test_y),
                test_groups,
                args.seed,
            )
            print(
                f"| {size}x{size} | {r['auc']:.3f} | {r['low']:.3f}–{r['high']:.3f} | {r['train_s']:.0f} s |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
