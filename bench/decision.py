"""Decision-rule benchmark: what the input contract + OOD check cost per prediction, and
whether the conformal sets cover as stated.

Run by hand after a pipeline run (``python bench/decision.py --workdir DIR``), not by the
tests. It reads the newest pushed version under ``<workdir>/serving/<model>/`` and the
run's ImageExampleGen splits, then prints:

* p50/p99 of one image through ``serving_default`` in process (the prediction), of the
  web app's / server's check (`breastdx_core.decision.assess`: header, colour statistics,
  conformal set), and of the OOD head alone (the Mahalanobis distance on the penultimate
  features, a [1, d] x [d, d] product, timed as a ``tf.function`` on the card's sizes), and
  their ratio to the prediction (goal: <= 10 %);
* the conformal sets' empirical coverage on the test split against the stated coverage,
  calibrated on the eval split at several levels (the card's level included), with the
  patient-bootstrap 95 % CI and the fraction of one-class answers.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CALLS = 200
WARMUP = 5
LEVELS = (0.8, 0.85, 0.9, 0.95)
MS = 1000.0


def _timed(fn, calls: int = CALLS):
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return np.percentile(samples, 50) * MS, np.percentile(samples, 99) * MS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--model", default="breastdx-idc")
    parser.add_argument("--pipeline", default="breastdx-idc")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from breastdx_core import contract, decision, model_card
    from components.evaluation import scoring
    from components.evaluation.statistics import covered_with_ci

    versions = sorted(
        glob.glob(os.path.join(args.workdir, "serving", args.model, "[0-9]*")),
        key=lambda p: int(os.path.basename(p)),
    )
    if not versions:
        print(f"error: nothing pushed under {args.workdir}/serving/{args.model}", file=sys.stderr)
        return 2
    version_dir = versions[-1]
    card = model_card.read(os.path.join(version_dir, contract.MODEL_CARD_RELPATH))
    [examples] = sorted(
        glob.glob(
            os.path.join(
                args.workdir, "pipelines", args.pipeline, "ImageExampleGen", "examples", "*"
            )
        )
    )[-1:]
    image = next(scoring.split_images(examples, "test", 1))

    model = tf.saved_model.load(version_dir)
    serve = model.signatures[contract.SIGNATURE_BYTES]
    batch = tf.constant([image])
    outputs = serve(**{contract.SERVING_INPUT_BYTES: batch})
    probabilities = outputs[contract.OUTPUT_PROBABILITIES].numpy()[0]
    ood = float(outputs[contract.OUTPUT_OOD].numpy()[0])
    predict_p50, predict_p99 = _timed(lambda: serve(**{contract.SERVING_INPUT_BYTES: batch}))
    check_p50, check_p99 = _timed(lambda: decision.assess(card, image, probabilities, ood))
    dims = card["ood_score"]["features"], card["ood_score"]["classes"]
    features = tf.random.normal([1, dims[0]])
    means, precision = tf.random.normal([dims[1], dims[0]]), tf.eye(dims[0])

    @tf.function
    def ood_head(f):
        diff = f[:, tf.newaxis, :] - means[tf.newaxis]
        return tf.sqrt(tf.reduce_min(tf.einsum("nkd,de,nke->nk", diff, precision, diff), axis=1))

    ood_p50, ood_p99 = _timed(lambda: ood_head(features))
    print(
        f"model {version_dir} ({card.get('backbone')}), one {len(image)}-byte PNG, {CALLS} calls each"
    )
    print(f"{'step':42s} {'p50 ms':>8s} {'p99 ms':>8s} {'% of predict p50':>17s}")
    for name, p50, p99 in (
        ("predict (serving_default, in process)", predict_p50, predict_p99),
        ("contract + conformal (decision.assess)", check_p50, check_p99),
        (f"OOD head alone ({dims[0]} features, {dims[1]} means)", ood_p50, ood_p99),
        ("contract + OOD + conformal", check_p50 + ood_p50, check_p99 + ood_p99),
    ):
        print(f"{name:42s} {p50:8.2f} {p99:8.2f} {100 * p50 / predict_p50:16.1f}%")

    eval_scores = scoring.score_split(version_dir, examples, "eval", model=model)
    test_scores = scoring.score_split(version_dir, examples, "test", model=model)
    names = list(card["class_names"])
    print(
        f"\nconformal coverage on the test split ({len(test_scores.labels)} images, "
        f"{len(np.unique(test_scores.patients))} patients), calibrated on eval ({len(eval_scores.labels)} images)"
    )
    print(
        f"{'stated':>7s} {'claimed':>8s} {'test coverage':>14s} {'95% CI (patients)':>19s} {'one-class':>10s}"
    )
    for level in sorted(set(LEVELS) | {card["decision_rule"]["conformal"]["coverage"]}):
        rule = decision.calibrate_conformal(
            eval_scores.labels, eval_scores.probabilities, names, level
        )
        sets = decision.prediction_sets(rule, names, test_scores.probabilities)
        covered = np.array([names[y] in s for y, s in zip(test_scores.labels, sets)])
        result = covered_with_ci(covered, test_scores.patients)
        ci = result["ci95"] or {"low": float("nan"), "high": float("nan")}
        single = np.mean([len(s) == 1 for s in sets])
        print(
            f"{level:7.2f} {str(rule['claimed']):>8s} {result['value']:14.3f} "
            f"{ci['low']:9.3f}-{ci['high']:.3f} {single:10.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
