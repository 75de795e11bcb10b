"""Evaluator whose "no regression" baseline is the newest model in the push destination.

`pipeline/pipeline.py` uses it in place of TFX's Evaluator fed by a Resolver. A TFX
Resolver (LatestBlessedModelStrategy) compiles to a resolver executor, which open-source
Kubeflow Pipelines 2 refuses ("resolver executors not implemented"); this component is an
ordinary container task on every engine. Before TFMA runs it looks in the Pusher's
destination (TF Serving's ``<base>/<integer version>/``), copies the newest version into
its own output (``<evaluation>/baseline_model/``: what was compared against stays with
the evaluation) and hands it to TFX's Evaluator executor as the baseline, so the AUC
change threshold compares the candidate with the model being served. With nothing
pushed yet there is no baseline and only the absolute floor applies.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import (
    artifact_utils,
    channel,
    component_spec,
    standard_artifacts,
    standard_component_specs,
)
from tfx.utils import io_utils, json_utils, path_utils

BASELINE_DIRECTORY_KEY = "baseline_directory"
BASELINE_COPY = "baseline_model"
SAVED_MODEL = "saved_model.pb"

log = logging.getLogger(__name__)


def newest_version(base_directory: str | None) -> str | None:
    """The highest integer version folder under ``base_directory`` holding a SavedModel."""
    if not base_directory or not fileio.isdir(base_directory):
        return None
    versions = []
    for name in fileio.listdir(base_directory):
        name = name.rstrip("/")
        if name.isdigit() and fileio.exists(os.path.join(base_directory, name, SAVED_MODEL)):
            versions.append(int(name))
    return os.path.join(base_directory, str(max(versions))) if versions else None


class BaselineEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        # The Pusher's filesystem base directory (<serving_root>/<model_name>).
        BASELINE_DIRECTORY_KEY: component_spec.ExecutionParameter(type=str),
    }


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor with the newest pushed version as the baseline model."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        exec_properties = dict(exec_properties)
        base_directory = exec_properties.pop(BASELINE_DIRECTORY_KEY, None)
        input_dict = dict(input_dict)
        evaluation = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EVALUATION_KEY]
        )
        blessing = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY]
        )
        source = newest_version(base_directory)
        if source:
            baseline = standard_artifacts.Model()
            baseline.uri = os.path.join(evaluation.uri, BASELINE_COPY)
            # Where TFX's executors look for a Model artifact's SavedModel (flat under the
            # Kubeflow Pipelines shim, Format-Serving/ otherwise: pipeline/compat/kfp_shim.py).
            io_utils.copy_dir(source, path_utils.serving_model_dir(baseline.uri))
            input_dict[standard_component_specs.BASELINE_MODEL_KEY] = [baseline]
            log.info("BaselineEvaluator: baseline is the pushed version %s", source)
        else:
            input_dict.pop(standard_component_specs.BASELINE_MODEL_KEY, None)
            log.info(
                "BaselineEvaluator: nothing pushed under %s yet: only the absolute thresholds apply",
                base_directory,
            )
        super().Do(input_dict, output_dict, exec_properties)
        blessing.set_string_custom_property("baseline_source", source or "")
        blessing.set_string_custom_property(
            "baseline_version", os.path.basename(source) if source else ""
        )


class BaselineEvaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator (same inputs, outputs and executor) with ``baseline_directory``, the
    push destination whose newest version is the baseline, in place of a baseline channel."""

    SPEC_CLASS = BaselineEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        baseline_directory: str,
        eval_config: tfma.EvalConfig,
        example_splits: list[str] | None = None,
    ):
        spec = BaselineEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=None,
            eval_config=eval_config,
            example_splits=json_utils.dumps(example_splits),
            baseline_directory=baseline_directory,
            evaluation=channel.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
