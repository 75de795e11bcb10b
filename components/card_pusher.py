"""Pusher that also writes the model card beside the pushed model.

`pipeline/pipeline.py` uses it in place of TFX's Pusher. It pushes exactly as TFX's
filesystem Pusher does (TF Serving's layout ``<base>/<integer version>/``) and then
completes the card the Trainer started (``assets.extra/model_card.json``): version,
pipeline run, the Evaluator's metrics on the eval split and the blessing, so the model
server can return the card with the model's metadata.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.utils import proto_utils
from tfx.types import artifact_utils, channel, component_spec, standard_artifacts, standard_component_specs

from pipeline import contract

EVALUATION_KEY = "evaluation"


def overall_metrics(evaluation_uri: str) -> Dict[str, Any]:
    """The Evaluator's metrics on the whole eval split, {name: value}."""
    import tensorflow_model_analysis as tfma

    metrics: Dict[str, Any] = {}
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
                        "tp": m.true_positives, "fp": m.false_positives,
                        "tn": m.true_negatives, "fn": m.false_negatives}
    return metrics


def version_with_model(base_directory: str, model_uri: str) -> Optional[str]:
    """The pushed version directory whose card names ``model_uri`` as its trained model, if any."""
    if not fileio.isdir(base_directory):
        return None
    for version in sorted(fileio.listdir(base_directory), reverse=True):
        card_path = os.path.join(base_directory, version.rstrip("/"), contract.MODEL_CARD_RELPATH)
        if fileio.exists(card_path):
            with fileio.open(card_path, "r") as handle:
                if json.load(handle).get("trained_model_uri") == model_uri:
                    return os.path.join(base_directory, version.rstrip("/"))
    return None


class Executor(pusher_executor.Executor):
    """TFX's Pusher executor, then the model card."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        # A re-run whose Trainer came from the cache is blessed again (against itself as
        # the baseline); pushing it again would serve the same model under a new version.
        existing = version_with_model(destination.filesystem.base_directory, model.uri)
        if existing and self.CheckBlessing(input_dict):
            logging.info("Pusher: %s is already served as %s; not pushed again", model.uri, existing)
            self._MarkPushed(pushed, pushed_destination=existing, pushed_version=os.path.basename(existing))
            return
        super().Do(input_dict, output_dict, exec_properties)
        if not pushed.get_int_custom_property("pushed"):
            return
        served = pushed.get_string_custom_property("pushed_destination")
        card_path = os.path.join(served, contract.MODEL_CARD_RELPATH)
        card: Dict[str, Any] = {}
        if fileio.exists(card_path):
            with fileio.open(card_path, "r") as handle:
                card = json.load(handle)
        card.update({
            "model_name": os.path.basename(os.path.dirname(served.rstrip("/"))),
            "version": int(pushed.get_string_custom_property("pushed_version")),
            "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pipeline_run_id": getattr(self._context, "pipeline_run_id", None) if self._context else None,
            "trained_model_uri": model.uri,
        })
        evaluation = input_dict.get(EVALUATION_KEY)
        if evaluation:
            card["evaluation"] = {
                "split": "eval (patient-grouped)",
                "metrics": overall_metrics(evaluation[0].uri),
                "note": "Metrics of the data the pipeline ran on; on the embedded synthetic data they say "
                        "nothing about real tissue.",
            }
        for path in (card_path, os.path.join(pushed.uri, contract.MODEL_CARD_RELPATH)):
            fileio.makedirs(os.path.dirname(path))
            with fileio.open(path, "w") as handle:
                json.dump(card, handle, indent=1)


class CardPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        EVALUATION_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
    }


class CardPusher(base_component.BaseComponent):
    """Pushes a blessed model to a filesystem serving root and writes its model card."""

    SPEC_CLASS = CardPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: types.BaseChannel, push_destination: Any,
                 evaluation: Optional[types.BaseChannel] = None):
        spec = CardPusherSpec(
            model=model,
            model_blessing=model_blessing,
            evaluation=evaluation,
            push_destination=push_destination,
            pushed_model=channel.Channel(type=standard_artifacts.PushedModel),
        )
        super().__init__(spec=spec)
