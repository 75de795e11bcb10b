"""How far a better threshold or an ensemble could move the per-patch IDC figures.

    python bench/idc_ceiling.py docs/results/data/idc-cv-3fold.json \
        docs/results/data/idc-recipe-cv.json --ensemble

Reads cross-validation results the project wrote (`breastdx cv`'s JSON, or
bench/idc_budget.py ``--stage cv``'s, one row per candidate) and prints, per model, the
pooled balanced accuracy and F1 at the references' prevalence (28.4 %) with 95 %
patient-bootstrap CIs at two kinds of threshold:

- **eval**: each fold's threshold chosen on its eval patients, as the files record it
  (what a user gets; the figures the goal is judged on);
- **oracle**: the folds' thresholds chosen together on the test patients themselves, those
  that maximise the pooled balanced accuracy, and those that maximise the pooled F1 at
  28.4 %: a choice no user can make, so the most any per-fold threshold rule could reach
  with these scores.

When the oracle is below a goal, no choice of operating point reaches it: the scores
themselves (their ranking of patches, the AUC) must improve. ``--ensemble`` adds the
mean-logit ensemble of every bench candidate given (bench files of the same folds and
seed score the same patches in the same order), oracle only: the files keep no eval
scores to choose its threshold on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.idc_budget import RULES, pooled  # noqa: E402
from breastdx_core import metrics  # noqa: E402
from components.evaluation import statistics  # noqa: E402

GOAL = {"balanced_accuracy": 0.87, "f1_at_reference_prevalence": 0.80}
REFERENCES = {"balanced_accuracy": 0.8423, "f1_at_reference_prevalence": 0.7648}


def oracle_thresholds(folds: Sequence[dict[str, Any]], rule: str) -> list[float]:
    """One threshold per fold (``scores >= t`` positive), chosen on the folds' own test
    patches to maximise the *pooled* balanced accuracy (``max_balanced_accuracy``) or pooled
    F1 at the references' prevalence (``max_f1``) over all folds together.

    Pooled sensitivity minus ``lam`` times pooled false-positive rate is a sum over folds,
    so for each ``lam`` every fold's best threshold is found on its own; balanced accuracy
    is ``lam`` = 1, and the F1 optimum lies on the same frontier, found by scanning ``lam``.
    """
    points = [statistics.operating_points(f["labels"], f["scores"]) for f in folds]
    pos = sum(int(np.sum(f["labels"])) for f in folds)
    neg = sum(len(f["labels"]) for f in folds) - pos
    if not pos or not neg:
        raise SystemExit("the pooled test patches hold one class: no threshold to choose")

    def at(lam: float) -> tuple[list[int], float, float]:
        picks = [int(np.argmax(tp / pos - lam * fp / neg)) for _, tp, fp in points]
        tp = sum(p[1][i] for p, i in zip(points, picks))
        fp = sum(p[2][i] for p, i in zip(points, picks))
        return picks, tp / pos, fp / neg

    if rule == "max_balanced_accuracy":
        picks = at(1.0)[0]
    elif rule == "max_f1":
        picks = max(
            (at(lam) for lam in np.geomspace(1e-2, 1e2, 401)),
            key=lambda r: float(metrics.f1_from_rates(r[1], r[2])),
        )[0]
    else:
        raise ValueError(f"unknown rule {rule!r}: {' or '.join(RULES)}")
    return [float(point[0][i]) for point, i in zip(points, picks)]


def _row(labels, scores, groups, thresholds: dict[str, float]) -> dict[str, Any]:
    return {
        "labels": np.asarray(labels).astype(int),
        "groups": np.asarray(groups),
        "scores": np.asarray(scores, dtype=np.float64),
        "plain": {rule: {"threshold": thresholds[rule]} for rule in RULES},
    }


def models(paths: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """{model name: [per fold {labels, groups, scores, eval thresholds or None}]}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        name = os.path.basename(path)
        if "candidates" in result:  # bench/idc_budget.py --stage cv
            for candidate, entry in result["candidates"].items():
                folds = [entry["folds"][k] for k in sorted(entry["folds"], key=int)]
                out[f"{name}: {candidate}"] = [
                    {
                        **{k: f[k] for k in ("labels", "groups", "scores")},
                        "eval": {rule: f["plain"][rule]["threshold"] for rule in RULES},
                    }
                    for f in folds
                ]
        elif "folds" in result:  # breastdx cv
            # F1 at 28.4 % at the rule chosen for it, where the file has one
            f1_rule = (
                "max_f1_at_28.4%"
                if "max_f1_at_28.4%" in result["meta"].get("operating_rules", ())
                else "max_f1"
            )
            out[name] = [
                {
                    **{k: f[k] for k in ("labels", "groups", "scores")},
                    "eval": {
                        "max_balanced_accuracy": f["operating"]["max_balanced_accuracy"][
                            "threshold"
                        ],
                        "max_f1": f["operating"][f1_rule]["threshold"],
                    },
                }
                for f in result["folds"]
            ]
        else:
            raise SystemExit(f"{path}: neither breastdx cv's nor idc_budget.py's cv results")
    return out


def ensemble(folds_by_model: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The mean logit of models scored on the same folds and patches, per fold."""
    out = []
    for folds in zip(*folds_by_model):
        labels = np.asarray(folds[0]["labels"])
        if any(
            not np.array_equal(labels, f["labels"])
            or not np.array_equal(folds[0]["groups"], f["groups"])
            for f in folds
        ):
            raise SystemExit("--ensemble: the candidates were not scored on the same patches")
        p = np.clip([np.asarray(f["scores"], dtype=np.float64) for f in folds], 1e-7, 1 - 1e-7)
        logit = np.log(p / (1 - p)).mean(axis=0)
        out.append(
            {"labels": labels, "groups": folds[0]["groups"], "scores": 1 / (1 + np.exp(-logit))}
        )
    return out


def ceiling(folds: list[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    """Pooled figures at the eval thresholds (where recorded) and at the oracle ones."""
    out: dict[str, Any] = {
        "fold_auc": [metrics.roc_auc(f["labels"], f["scores"]) for f in folds],
    }
    kinds = {"oracle": None}
    if all(f.get("eval") for f in folds):
        kinds = {"eval": "eval", **kinds}
    for kind in kinds:
        if kind == "eval":
            thresholds = [f["eval"] for f in folds]
        else:
            chosen = {rule: oracle_thresholds(folds, rule) for rule in RULES}
            thresholds = [{rule: chosen[rule][k] for rule in RULES} for k in range(len(folds))]
        rows = [_row(f["labels"], f["scores"], f["groups"], t) for f, t in zip(folds, thresholds)]
        entry = pooled(rows, resamples, seed)["plain"]
        out[kind] = {
            "balanced_accuracy": entry["max_balanced_accuracy"]["balanced_accuracy"],
            "f1_at_reference_prevalence": entry["max_f1"]["f1_at_reference_prevalence"],
        }
    return out


def _cell(entry: dict[str, Any]) -> str:
    ci = entry.get("ci95") or {}
    interval = f" [{ci['low']:.3f}–{ci['high']:.3f}]" if ci else ""
    return f"{entry['value']:.3f}{interval}"


def render(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | fold AUCs | threshold | balanced accuracy (max BA) | F1 at 28.4 % (max F1) |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        aucs = " / ".join(f"{a:.3f}" for a in result["fold_auc"])
        for kind in ("eval", "oracle"):
            if kind in result:
                r = result[kind]
                lines.append(
                    f"| {name} | {aucs} | {kind} | {_cell(r['balanced_accuracy'])} | "
                    f"{_cell(r['f1_at_reference_prevalence'])} |"
                )
    goal = ", ".join(f"{k} >= {v} (lower CI end > {REFERENCES[k]})" for k, v in GOAL.items())
    lines += ["", f"Goal per patch: {goal}. Research use only, not a diagnosis."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="breastdx cv or idc_budget.py cv JSON files")
    parser.add_argument(
        "--ensemble", action="store_true", help="add the bench candidates' mean-logit ensemble"
    )
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    found = models(args.results)
    if args.ensemble:
        bench_models = [name for name in found if ": " in name]
        if len(bench_models) > 1:
            found[f"ensemble of the {len(bench_models)} bench candidates"] = ensemble(
                [found[name] for name in bench_models]
            )
    results = {name: ceiling(folds, args.resamples, args.seed) for name, folds in found.items()}
    print(render(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
