"""Pretrained vs scratch: the same backbone from ImageNet weights and from random weights,
by patient-level K-fold cross-validation (`lab.cv.cross_validate`, which trains
every fold through the Trainer module's `run_fn`).

    python bench/pretrained.py --data-root ../shared/data/idc-real-dev [--folds 3]
        [--train-steps 40] [--backbone efficientnet_lite0] [--workdir DIR]

Both arms share the data stages (one TFX-cached ExampleGen + Transform in ``--workdir``),
the folds (same seed: the same patients in each fold), the step budget and the rest of the
settings; only ``weights`` differs. Prints a Markdown table of the pooled out-of-fold
metrics with patient-bootstrap 95 % CIs and writes ``pretrained_vs_scratch.json`` beside
the per-arm reports. Figures from it: docs/results/pretrained.md.
"""

import argparse
import json
import logging
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _fmt(entry):
    value, ci = entry.get("value"), entry.get("ci95") or {}
    if value is None:
        return "n/a"
    low, high = ci.get("low"), ci.get("high")
    return (
        f"{value:.3f} [{low:.3f}-{high:.3f}]"
        if low is not None and high is not None
        else f"{value:.3f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root", required=True, help="image root (IDC layout or class folders)"
    )
    parser.add_argument("--task", default="idc")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=40, help="steps per fold, both arms")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--eval-steps", type=int, default=8, help="eval batches per validation (0: whole split)"
    )
    parser.add_argument("--backbone", default="efficientnet_lite0")
    # Each arm at its own learning rate: 1e-3 is the study's start with ImageNet weights (the
    # head phase; fine-tuning at a tenth), 1e-4 the measured rate for random weights (configs.py).
    parser.add_argument(
        "--arms",
        default="imagenet:1e-3,none:1e-4",
        help="weights:learning_rate of each arm, comma-separated",
    )
    parser.add_argument("--workdir", default=os.path.join("workdir", "bench-pretrained"))
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)

    from breastdx_core import configs
    from lab import cv

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "tensorflow", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    rows = []
    for arm in [a.strip() for a in args.arms.split(",") if a.strip()]:
        weights, _, rate = arm.partition(":")
        config = configs.load(
            task=args.task,
            data_root=os.path.abspath(args.data_root),
            workdir=args.workdir,
            backbone=args.backbone,
            weights=None if weights == "none" else weights,
            learning_rate=float(rate) if rate else None,
            train_steps=args.train_steps,
            epochs=args.epochs,
            batch_size=args.batch_size,
            eval_steps=args.eval_steps,
        )
        if weights == "none":
            # `load` reads an override of None as "not given", so a preset whose default is
            # pretrained (BUSI) would keep its ImageNet weights in the random arm.
            config = config.replace(weights=None)
        out = os.path.join(args.workdir, "reports", f"pretrained-{args.backbone}-{weights}")
        started = time.time()
        result = cv.cross_validate(config, args.folds, out, resamples=args.resamples)
        pooled = result["pooled"]
        rows.append(
            {
                "backbone": args.backbone,
                "weights": weights,
                "learning_rate": config.training.learning_rate,
                "folds": args.folds,
                "n_images": pooled["n_images"],
                "n_patients": pooled["n_patients"],
                "metrics": pooled["metrics"],
                "per_fold_auc": [r["metrics"]["auc"]["value"] for r in result["folds"]],
                "seconds": round(time.time() - started, 1),
                "report": result["files"].get("index.html"),
            }
        )
    with open(os.path.join(args.workdir, "pretrained_vs_scratch.json"), "w") as handle:
        json.dump({"settings": vars(args), "arms": rows}, handle, indent=1)
    print(
        f"\n{args.folds}-fold patient-level CV on {args.data_root}, {args.train_steps} steps of "
        f"{args.batch_size} per fold; pooled out-of-fold metrics, 95 % CI by patient bootstrap\n"
    )
    print(
        "| backbone | weights (lr) | AUC | balanced accuracy | sensitivity | specificity | per-fold AUC | images / "
        "patients | wall |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        m = row["metrics"]
        print(
            f"| {row['backbone']} | {row['weights']} ({row['learning_rate']:g}) | "
            f"{_fmt(m['auc'])} | {_fmt(m['balanced_accuracy'])} | "
            f"{_fmt(m['sensitivity'])} | {_fmt(m['specificity'])} | "
            f"{', '.join(f'{v:.3f}' for v in row['per_fold_auc'])} | {row['n_images']} / {row['n_patients']} | "
            f"{row['seconds'] / 60:.0f} min |"
        )
    print("\nResearch use only, not a diagnosis.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
