"""EvaluationReport: the component between the Evaluator and the Pusher that completes the
model card before anything is published.

`pipeline/pipeline.py` wires it: Trainer + Evaluator -> EvaluationReport -> CardPusher. It
runs on every engine as an ordinary Python component (so cluster runs get the report too)
and writes into its ``report`` artifact:

* ``evaluation_report.{json,html}``: the test split's metrics with n and patient-bootstrap
  CIs, curves, calibration, and the decision rule with its coverage on the test split;
* ``model_card.json``: the Trainer's card plus, through breastdx_core/model_card.py, the
  Evaluator's metrics, the input contract measured on the train split
  (``input_contract.accepted``), the decision rule (conformal sets calibrated on the eval
  split, the OOD threshold set on the eval split, both measured on the test split) and the
  small-sample warnings. The Pusher only validates and publishes it.

Splits: train (the input contract; the OOD density was fitted there by the Trainer),
eval (conformal calibration, OOD threshold, operating threshold), test (everything the
card claims is measured there). Both variants with a classifier use it: the classify
variant on ImageExampleGen's splits, the mammography variant on CbisExampleGen's
``mammograms`` (components/mammo/cbis.pipeline_splits); a model without an ``ood_score``
output (the whole-mammogram model) gets no OOD threshold, and the card says so.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, channel, component_spec, standard_artifacts
from tfx.utils import path_utils

from breastdx_core import contract, decision, model_card

log = logging.getLogger(__name__)

CARD_FILE = model_card.FILE_NAME  # the card at the report folder's top, for the Pusher
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
EVALUATION_KEY = "evaluation"
REPORT_KEY = "report"


class EvaluationReportArtifact(types.Artifact):
    """A folder with ``model_card.json`` (complete but for version and run) and the report."""

    # "<module>.<Class>": the KFP v2 compiler wants <namespace>.<Name>, its container entrypoint
    # imports the class by that path (components/__init__.py resolves it lazily).
    TYPE_NAME = "components.EvaluationReport"


def overall_metrics(evaluation_uri: str) -> dict[str, Any]:
    """The Evaluator's metrics on the whole eval split, {name: value} (TFMA's snake-case keys)."""
    import tensorflow_model_analysis as tfma

    metrics: dict[str, Any] = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:  # only the overall slice
            continue
        for kv in slice_metrics.metric_keys_and_values:
            if kv.key.is_diff:
                continue
            value = kv.value
            if value.HasField("double_value"):
                metrics[kv.key.name] = round(value.double_value.value, 6)
            elif value.HasField("confusion_matrix_at_thresholds"):
                for m in value.confusion_matrix_at_thresholds.matrices:
                    metrics[f"confusion_matrix@{m.threshold:g}"] = {
                        "tp": m.true_positives,
                        "fp": m.false_positives,
                        "tn": m.true_negatives,
                        "fn": m.false_negatives,
                    }
    return metrics


def decision_rule(
    eval_scores,
    test_scores,
    class_names: list[str],
    positive_class: str,
    operating: float,
    coverage: float,
    false_alarm_rate: float,
    resamples: int,
    seed: int,
    operating_rule: str = "sensitivity",
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The card's ``decision_rule`` from the scored eval and test splits (breastdx_core/decision.py).
    ``operating`` is the threshold of ``operating_rule``; ``thresholds`` every rule's
    (chosen on eval: max F1, max balanced accuracy, the sensitivity target), recorded."""
    from components.evaluation.statistics import covered_with_ci

    conformal = decision.calibrate_conformal(
        eval_scores.labels,
        eval_scores.probabilities,
        class_names,
        coverage,
        calibrated_on="eval (patient-grouped)",
    )
    sets = decision.prediction_sets(conformal, class_names, test_scores.probabilities)
    truth = [class_names[i] for i in test_scores.labels]
    covered = np.array([t in s for t, s in zip(truth, sets)])
    test_coverage = covered_with_ci(covered, test_scores.patients, resamples, seed)
    test_coverage["singleton_fraction"] = float(np.mean([len(s) == 1 for s in sets]))
    test_coverage["per_class"] = {
        name: float(covered[test_scores.labels == c].mean())
        if np.any(test_scores.labels == c)
        else None
        for c, name in enumerate(class_names)
    }
    conformal["test_coverage"] = test_coverage
    ood: dict[str, Any] = {
        "output": contract.OUTPUT_OOD,
        "false_alarm_rate": float(false_alarm_rate),
        "threshold": None,
        "set_on": "eval (patient-grouped)",
        "test_false_alarm": None,
        "score": "Mahalanobis distance of the penultimate features to the nearest train class mean",
    }
    if eval_scores.ood is not None and test_scores.ood is not None:
        ood["threshold"] = decision.ood_threshold(eval_scores.ood, false_alarm_rate)
        ood["test_false_alarm"] = covered_with_ci(
            test_scores.ood > ood["threshold"], test_scores.patients, resamples, seed
        )
        refused = 'Inputs outside the input contract or above the OOD threshold are "not assessed".'
    else:
        ood["note"] = (
            f"the model has no {contract.OUTPUT_OOD} output: no OOD threshold, only the input contract"
        )
        refused = (
            'Inputs outside the input contract are "not assessed" (the model has no OOD score).'
        )
    kind = "conformal" if conformal["claimed"] else "threshold"
    if kind == "conformal":
        description = (
            f"Class-conditional split-conformal prediction sets at {coverage:.0%} coverage, calibrated "
            "on the eval split: a one-class set is the answer; a set of two or more classes (or none) "
            f'is "uncertain: refer to a pathologist". {refused}'
        )
    else:
        description = (
            f"{coverage:.0%} conformal coverage is NOT claimed: {conformal['reason']}. The answer is "
            f"{positive_class} where its probability is at least the operating threshold "
            f"{operating:.4g} (chosen on eval: {RULE_TEXT.get(operating_rule, operating_rule)}), "
            f"else the other class. {refused}"
        )
    return {
        "kind": kind,
        "description": description,
        "class_names": list(class_names),
        "positive_class": positive_class,
        "operating_threshold": float(operating),
        "operating_rule": operating_rule,
        "operating_thresholds": {
            k: float(v) for k, v in (thresholds or {operating_rule: operating}).items()
        },
        "conformal": conformal,
        "ood": ood,
    }


RULE_TEXT = {
    "sensitivity": "for sensitivity",
    "max_f1": "for the highest F1",
    "max_balanced_accuracy": "for the highest balanced accuracy",
}


class Executor(base_executor.BaseExecutor):
    """Scores eval and test with the trained model, measures the contract, writes report and card."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        import tensorflow as tf

        from components.evaluation import report as report_files
        from components.evaluation import scoring, statistics

        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        out = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        class_names = json.loads(exec_properties["class_names"])
        positive_index = int(exec_properties["positive_index"])
        resamples, seed = int(exec_properties["bootstrap_resamples"]), int(exec_properties["seed"])
        model_dir = path_utils.serving_model_path(model.uri)
        if not fileio.exists(os.path.join(model_dir, "saved_model.pb")):
            model_dir = (
                model.uri
            )  # KFP's launcher layout: the SavedModel flat in the artifact folder
        card = model_card.load(model_card.path_in(model_dir), files=fileio)

        loaded = tf.saved_model.load(model_dir)
        eval_scores = scoring.score_split(model_dir, examples.uri, "eval", model=loaded)
        test_scores = scoring.score_split(model_dir, examples.uri, "test", model=loaded)
        # A model that fits any image to its frame itself (the Trainer's card says
        # ``input_contract.any_size``: the whole-mammogram model, whose records are fitted
        # already) gets no size limit; channels, bit depth and statistics still apply.
        accepted = decision.measure_accepted(
            scoring.split_images(examples.uri, "train", int(exec_properties["contract_images"])),
            measured_on="train split",
            margin=float(exec_properties["contract_margin"]),
            any_size=bool(card.get("input_contract", {}).get("any_size")),
        )

        splits = {}
        for name, scores in (("eval", eval_scores), ("test", test_scores)):
            splits[name] = {
                "images": int(len(scores.labels)),
                "patients": int(len(np.unique(scores.patients))),
                "per_class": [int(np.sum(scores.labels == c)) for c in range(len(class_names))],
            }
        positive = class_names[positive_index]
        negative_name = (
            [n for n in class_names if n != positive][0]
            if len(class_names) == 2
            else f"not {positive}"
        )
        synthetic = bool(int(exec_properties["synthetic"]))
        operating_rule = exec_properties.get("operating_rule") or "sensitivity"
        report = statistics.build_report(
            test_scores.binary(positive_index),
            eval_scores.binary(positive_index),
            target_sensitivity=float(exec_properties["target_sensitivity"]),
            resamples=resamples,
            seed=seed,
            card=card,
            splits=splits,
            synthetic=synthetic,
            class_names=(negative_name, positive),
            operating_rule=operating_rule,
            test_xy=test_scores.xy(),
            choose_xy=eval_scores.xy(),
        )
        rule = decision_rule(
            eval_scores,
            test_scores,
            class_names,
            positive,
            report["thresholds"]["operating"]["value"],
            float(exec_properties["coverage"]),
            float(exec_properties["false_alarm_rate"]),
            resamples,
            seed,
            operating_rule=operating_rule,
            thresholds={k: v["value"] for k, v in report["thresholds"]["candidates"].items()},
        )
        warnings = statistics.sample_warnings(splits, class_names)
        report.update(
            decision_rule=rule,
            small_sample_warnings=warnings,
            input_contract=accepted,
            examples_uri=examples.uri,
            trained_model_uri=model.uri,
        )
        paths = report_files.write(out.uri, report)

        tfma_metrics = {}
        if input_dict.get(EVALUATION_KEY):
            tfma_metrics = overall_metrics(
                artifact_utils.get_single_uri(input_dict[EVALUATION_KEY])
            )
        test_block = {
            "split": "test (patient-grouped, held out)",
            "n_images": splits["test"]["images"],
            "n_patients": splits["test"]["patients"],
            "auc": report["image_level"]["at_0.5"]["auc"],
            "at_operating": report["image_level"]["at_operating"],
        }
        card = model_card.with_accepted(card, accepted)
        card.update(
            model_card.evaluation_fields(
                tfma_metrics=tfma_metrics,
                n_images=splits["eval"]["images"],
                n_patients=splits["eval"]["patients"],
                synthetic=synthetic,
                test=test_block,
                accepted=accepted,
                decision_rule=rule,
                warnings=warnings,
                report_paths={
                    "json": f"assets.extra/{report_files.REPORT_JSON}",
                    "html": f"assets.extra/{report_files.REPORT_HTML}",
                },
            )
        )
        context = report.get("slide_context") or {}
        if context.get("available"):
            # The web app's mosaic and map answers smooth with the width chosen here
            # (breastdx_core.slide_context.slide_context).
            card["slide_context"] = {
                "sigma_grid_steps": context["sigma_grid_steps"],
                "chosen_on": "eval",
                "test_auc": context["auc"]["value"],
                "function": "breastdx_core.slide_context.slide_context",
            }
        model_card.save(os.path.join(out.uri, CARD_FILE), card, files=fileio)
        log.info(
            "EvaluationReport: %s; rule %s; test coverage %s",
            paths["html"],
            rule["kind"],
            rule["conformal"]["test_coverage"]["value"],
        )


class EvaluationReportSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        "class_names": component_spec.ExecutionParameter(type=str),  # JSON list
        "positive_index": component_spec.ExecutionParameter(type=int),
        "coverage": component_spec.ExecutionParameter(type=float),
        "false_alarm_rate": component_spec.ExecutionParameter(type=float),
        "target_sensitivity": component_spec.ExecutionParameter(type=float),
        "contract_margin": component_spec.ExecutionParameter(type=float),
        "contract_images": component_spec.ExecutionParameter(type=int),
        "bootstrap_resamples": component_spec.ExecutionParameter(type=int),
        "seed": component_spec.ExecutionParameter(type=int),
        "synthetic": component_spec.ExecutionParameter(type=int),
        "operating_rule": component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        EVALUATION_KEY: component_spec.ChannelParameter(
            type=standard_artifacts.ModelEvaluation, optional=True
        ),
    }
    OUTPUTS = {REPORT_KEY: component_spec.ChannelParameter(type=EvaluationReportArtifact)}


class EvaluationReport(base_component.BaseComponent):
    """Writes the evaluation report and completes the model card before the push."""

    SPEC_CLASS = EvaluationReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        class_names: list[str],
        positive_index: int,
        coverage: float,
        false_alarm_rate: float,
        target_sensitivity: float,
        contract_margin: float,
        contract_images: int,
        bootstrap_resamples: int,
        seed: int,
        synthetic: bool,
        evaluation: types.BaseChannel | None = None,
        operating_rule: str = "sensitivity",
    ):
        spec = EvaluationReportSpec(
            examples=examples,
            model=model,
            evaluation=evaluation,
            class_names=json.dumps(list(class_names)),
            positive_index=int(positive_index),
            coverage=float(coverage),
            false_alarm_rate=float(false_alarm_rate),
            target_sensitivity=float(target_sensitivity),
            contract_margin=float(contract_margin),
            contract_images=int(contract_images),
            bootstrap_resamples=int(bootstrap_resamples),
            seed=int(seed),
            synthetic=int(bool(synthetic)),
            operating_rule=str(operating_rule),
            report=channel.Channel(type=EvaluationReportArtifact),
        )
        super().__init__(spec=spec)
