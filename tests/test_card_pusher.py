"""CardPusher publishes only: the EvaluationReport's card, validated, with the report,
saved_model.pb last; a card that breaks the schema publishes nothing."""

import json
import os

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from breastdx_core import contract, model_card
from components import card_pusher
from components.evaluation_report import CARD_FILE, EvaluationReportArtifact


def _artifact(cls, uri, **props):
    artifact = cls()
    artifact.uri = str(uri)
    for key, value in props.items():
        artifact.set_int_custom_property(key, value)
    return artifact


def _card():
    config = {
        "class_names": ["IDC-negative", "IDC-positive"],
        "positive_index": 1,
        "model_size": [64, 64],
        "task": "idc",
    }
    return model_card.trainer_fields(
        config=config,
        signature=contract.SIGNATURE_BYTES,
        input_description="bytes",
        outputs=[],
        parameters={"total": 1},
        history={},
        seconds=1.0,
    )


@pytest.fixture
def inputs(tmp_path):
    model = tmp_path / "Trainer" / "model" / "3"
    serving = model / "Format-Serving"
    (serving / "assets.extra").mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(b"not really a graph")
    (serving / contract.MODEL_CARD_RELPATH).write_text(json.dumps(_card()))
    report = tmp_path / "EvaluationReport" / "report" / "4"
    report.mkdir(parents=True)
    (report / "evaluation_report.html").write_text("<html>report</html>")
    (report / CARD_FILE).write_text(
        model_card.dumps({**_card(), "small_sample_warnings": ["few patients"]})
    )
    return tmp_path, model, report


def _push(tmp_path, model, report, pushed_name="5"):
    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "Pusher" / pushed_name)
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(
            base_directory=str(tmp_path / "serving" / "breastdx-idc")
        )
    )
    card_pusher.Executor().Do(
        {
            "model": [_artifact(standard_artifacts.Model, model)],
            "model_blessing": [
                _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing", blessed=1)
            ],
            "report": [_artifact(EvaluationReportArtifact, report)],
        },
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)},
    )
    return pushed


def test_publishes_the_reports_card_validated_with_the_report(inputs):
    tmp_path, model, report = inputs
    pushed = _push(tmp_path, model, report)
    served = pushed.get_string_custom_property("pushed_destination")
    card = model_card.validate(model_card.read(os.path.join(served, contract.MODEL_CARD_RELPATH)))
    assert card["version"] == int(os.path.basename(served)) and card["model_name"] == "breastdx-idc"
    assert card["small_sample_warnings"] == [
        "few patients"
    ]  # the EvaluationReport's card, not the Trainer's
    assert card["trained_model_uri"] == str(model)
    assert (
        open(os.path.join(served, "assets.extra", "evaluation_report.html")).read()
        == "<html>report</html>"
    )
    assert os.path.exists(os.path.join(served, "saved_model.pb"))
    again = _push(
        tmp_path, model, report, pushed_name="6"
    )  # a cached re-run: the same model is not pushed again
    assert again.get_string_custom_property("pushed_destination") == served
    assert os.listdir(tmp_path / "serving" / "breastdx-idc") == [os.path.basename(served)]


def test_a_card_that_breaks_the_schema_publishes_nothing(inputs):
    tmp_path, model, report = inputs
    broken = {k: v for k, v in _card().items() if k != "class_names"}
    (report / CARD_FILE).write_text(json.dumps(broken))
    with pytest.raises(model_card.CardError, match="class_names"):
        _push(tmp_path, model, report)
    assert not (tmp_path / "serving").exists()
