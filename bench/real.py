"""Real-tissue figures: patient-level K-fold on the real IDC dev set, with and without
H&E stain jitter, against the published references.

    nice -n 10 .venv/bin/python bench/real.py --data-root ../shared/data/idc-real-dev \
        --folds 3 --variants plain,stain [--backbone efficientnet_lite0 --weights imagenet] \
        [--epochs 2] [--max-train-minutes 8] [--workdir /tmp/real-workdir]

Each variant is one `breastdx cv` run (lab/cv.py: the pipeline's data stages,
then K models through the Trainer module's `run_fn`, each patient scored once by the
model that never saw them); the data stages and the per-patient regrouping are shared
(same workdir). Prints the pooled table and writes ``<workdir>/reports/real/real.md``
and ``real.json``; each variant's fold table, ROC plot and HTML stay in
``<workdir>/reports/real/<variant>/``. Not a timed test: `make test` never reads the
real data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Janowczyk & Madabhushi 2016 (J Pathol Inform 7:29) and Cruz-Roa et al. 2014 (SPIE 9041):
# the published figures on the full Kaggle IDC set (patient-held-out, 277,524 patches).
REFERENCES = {
    "balanced_accuracy": (0.8423, "Cruz-Roa et al. 2014"),
    "f1": (0.7648, "Janowczyk & Madabhushi 2016"),
}
# variant name -> settings it changes
VARIANTS = {"plain": {"stain_jitter": 0.0}, "stain": {"stain_jitter": 0.05}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--workdir", default="/tmp/breastdx-real")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--variants", default="plain,stain")
    parser.add_argument("--backbone")
    parser.add_argument("--weights")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--max-train-minutes", type=float)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--only-folds", help="comma-separated fold indices (a partial run, say so)")
    parser.add_argument("--tag", default="", help="suffix of the report folder (a second budget)")
    args = parser.parse_args(argv)

    import logging

    from breastdx_core import configs
    from lab import cv

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "apache_beam", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out_root = os.path.join(args.workdir, "reports", "real" + (f"-{args.tag}" if args.tag else ""))
    os.makedirs(out_root, exist_ok=True)
    only = [int(f) for f in args.only_folds.split(",")] if args.only_folds else None
    rows = []
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        config = configs.load(
            data_root=args.data_root,
            workdir=args.workdir,
            backbone=args.backbone,
            weights=args.weights,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_train_minutes=args.max_train_minutes,
            bootstrap_resamples=args.resamples,
            **VARIANTS[name],
        )
        started = time.time()
        result = cv.cross_validate(
            config, args.folds, os.path.join(out_root, name), only_folds=only
        )
        pooled = result["pooled"]["metrics"]
        rows.append(
            {
                "variant": name,
                "stain_jitter": config.training.stain_jitter,
                "backbone": config.training.backbone,
                "weights": config.training.weights or "none",
                "epochs": config.training.epochs,
                "max_train_minutes": config.training.max_train_minutes,
                "folds": args.folds,
                "folds_run": result["meta"]["folds_run"],
                "patients": result["pooled"]["n_patients"],
                "images": result["pooled"]["n_images"],
                "images_seen_per_fold": [f["budget"]["images_seen"] for f in result["folds"]],
                "seconds": round(time.time() - started),
                "pooled": pooled,
                "per_fold_auc": [f["metrics"]["auc"]["value"] for f in result["folds"]],
                "operating": result["pooled"].get("operating", {}),
                "warnings": result["warnings"],
            }
        )
        print(open(result["files"]["cv.md"]).read(), flush=True)

    def cell(entry):
        ci = entry["ci95"]
        return (
            f"{entry['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
            if ci
            else f"{entry['value']:.3f}"
        )

    lines = [
        f"Real IDC dev set ({args.data_root}): patient-level {args.folds}-fold CV, pooled out-of-fold "
        "metrics at the calibrated 0.5 threshold, 95 % CIs by patient bootstrap. Research use only, "
        "not a diagnosis.",
        "",
        "| variant | backbone (weights) | epochs / wall budget | images seen per fold | AUC | balanced accuracy "
        "| F1 | sensitivity | specificity | seconds |",
        "|---|---|---|---|---|---|---|---|---|---:|",
    ]
    for row in rows:
        m = row["pooled"]
        budget = f"{row['epochs']}" + (
            f" / {row['max_train_minutes']:g} min" if row["max_train_minutes"] else ""
        )
        lines.append(
            f"| {row['variant']} (stain {row['stain_jitter']:g}) | {row['backbone']} ({row['weights']}) | "
            f"{budget} | {', '.join(str(n) for n in row['images_seen_per_fold'])} | {cell(m['auc'])} | "
            f"{cell(m['balanced_accuracy'])} | {cell(m['f1'])} | {cell(m['sensitivity'])} | "
            f"{cell(m['specificity'])} | {row['seconds']} |"
        )
    lines += [
        "",
        "The same out-of-fold scores, each fold called at a threshold chosen on its own eval patients "
        "(never its test patients):",
        "",
        "| variant | threshold rule | per-fold thresholds | balanced accuracy | F1 | sensitivity | specificity |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for rule, entry in row["operating"].items():
            m = entry["metrics"]
            lines.append(
                f"| {row['variant']} | {cv.RULE_TITLES.get(rule, rule)} | "
                f"{', '.join(f'{t:.3f}' for t in entry['thresholds'])} | {cell(m['balanced_accuracy'])} | "
                f"{cell(m['f1'])} | {cell(m['sensitivity'])} | {cell(m['specificity'])} |"
            )
    lines += [
        "",
        "References (full Kaggle set): "
        + "; ".join(f"{k.replace('_', ' ')} {v:.4f} ({who})" for k, (v, who) in REFERENCES.items()),
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_root, "real.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(out_root, "real.json"), "w") as handle:
        json.dump({"args": vars(args), "rows": rows}, handle, indent=1, default=float)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
