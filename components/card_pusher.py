"""Pusher that publishes a blessed model with its validated model card and report.

`pipeline/pipeline.py` uses it in place of TFX's Pusher. It only publishes: the card
comes complete from the EvaluationReport component (components/evaluation_report.py;
the segmentation variant, which has none, publishes the Trainer's card), gains the
version, run id and trained model's URI (`model_card.publish_fields`), and is validated
against the schema (`model_card.validate`) before anything is copied. The layout is TF
Serving's ``<base>/<integer version>/`` as TFX's filesystem Pusher writes it, and, as
there, ``saved_model.pb`` is copied last, after the card and the report: a model server
that polls the folder never loads a version without them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import (
    artifact_utils,
    channel,
    component_spec,
    standard_artifacts,
    standard_component_specs,
)
from tfx.utils import io_utils, proto_utils

from breastdx_core import contract, model_card
from components.evaluation_report import CARD_FILE, EvaluationReportArtifact

REPORT_KEY = "report"
SAVED_MODEL = "saved_model.pb"


def version_with_model(base_directory: str, model_uri: str) -> str | None:
    """The pushed version directory whose card names ``model_uri`` as its trained model, if any."""
    if not fileio.isdir(base_directory):
        return None
    for version in sorted(fileio.listdir(base_directory), reverse=True):
        card_path = model_card.path_in(os.path.join(base_directory, version.rstrip("/")))
        if fileio.exists(card_path):
            try:
                if model_card.load(card_path, files=fileio).get("trained_model_uri") == model_uri:
                    return os.path.join(base_directory, version.rstrip("/"))
            except model_card.CardError:
                continue
    return None


class Executor(pusher_executor.Executor):
    """Checks the blessing, validates the card, publishes model + card + report."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        pushed = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError(
                f"CardPusher pushes to a filesystem destination, got {destination}"
            )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        base = destination.filesystem.base_directory
        # A re-run whose Trainer came from the cache is blessed again (against itself as
        # the baseline); pushing it again would serve the same model under a new version.
        existing = version_with_model(base, model.uri)
        if existing:
            logging.info(
                "Pusher: %s is already served as %s; not pushed again", model.uri, existing
            )
            self._MarkPushed(
                pushed, pushed_destination=existing, pushed_version=os.path.basename(existing)
            )
            return
        model_path = self.GetModelPath(input_dict)
        report = input_dict.get(REPORT_KEY)
        source = report[0].uri if report else None
        card = model_card.load(
            os.path.join(source, CARD_FILE) if source else model_card.path_in(model_path),
            files=fileio,
        )
        version = str(int(time.time()))
        while fileio.exists(os.path.join(base, version)):
            version = str(int(version) + 1)
        card.update(
            model_card.publish_fields(
                model_name=os.path.basename(base.rstrip("/")),
                version=int(version),
                pipeline_run_id=getattr(self._context, "pipeline_run_id", None)
                if self._context
                else None,
                trained_model_uri=model.uri,
            )
        )
        model_card.validate(card)  # raises CardError naming the field: nothing is published

        serving_path = os.path.join(base, version)
        io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[r"saved_model\.pb"])
        extra = os.path.join(serving_path, os.path.dirname(contract.MODEL_CARD_RELPATH))
        if source:
            for name in fileio.listdir(source):
                if name != CARD_FILE:
                    io_utils.copy_file(
                        os.path.join(source, name), os.path.join(extra, name), overwrite=True
                    )
        model_card.save(model_card.path_in(serving_path), card, files=fileio)
        io_utils.copy_file(
            os.path.join(model_path, SAVED_MODEL), os.path.join(serving_path, SAVED_MODEL)
        )
        io_utils.copy_dir(serving_path, pushed.uri)  # the archive copy, card included
        self._MarkPushed(pushed, pushed_destination=serving_path, pushed_version=version)
        logging.info("Pusher: %s published as %s with its card", model.uri, serving_path)


class CardPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        REPORT_KEY: component_spec.ChannelParameter(type=EvaluationReportArtifact, optional=True),
    }


class CardPusher(base_component.BaseComponent):
    """Publishes a blessed model, its validated card and its evaluation report."""

    SPEC_CLASS = CardPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel | None,
        push_destination: Any,
        report: types.BaseChannel | None = None,
    ):
        spec = CardPusherSpec(
            model=model,
            model_blessing=model_blessing,
            report=report,
            push_destination=push_destination,
            pushed_model=channel.Channel(type=standard_artifacts.PushedModel),
        )
        super().__init__(spec=spec)
