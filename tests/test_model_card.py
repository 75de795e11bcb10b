"""The model card's one module: what the Trainer and the Pusher write validates; what
breaks the schema is refused with the field's name; readers get the schema's keys."""

import pytest

from breastdx_core import contract, model_card


def _card(**change):
    config = {
        "class_names": ["IDC-negative", "IDC-positive"],
        "positive_index": 1,
        "model_size": [64, 64],
        "task": "idc",
    }
    card = model_card.trainer_fields(
        config=config,
        signature=contract.SIGNATURE_BYTES,
        input_description="bytes",
        outputs=[contract.OUTPUT_PROBABILITIES],
        parameters={"total": 10},
        history={"loss": [0.7, float("nan")]},
        seconds=1.26,
        backbone="vgg16",
    )
    card.update(model_card.publish_fields("breastdx-idc", 17, None, "/pipelines/Trainer/model/7"))
    card.update(change)
    return card


def test_trainer_and_pusher_fields_make_a_valid_card():
    card = model_card.validate(_card())
    assert card["intended_use"].startswith(contract.RESEARCH_ONLY)
    assert card["training_history"]["loss"] == [0.7, None]  # NaN is not JSON
    assert card["train_seconds"] == 1.3 and card["schema_version"] == model_card.SCHEMA_VERSION


@pytest.mark.parametrize(
    "change, field",
    [
        ({"version": 0}, "version"),
        ({"class_names": ["only"]}, "class_names"),
        ({"intended_use": "Diagnoses cancer."}, "intended_use"),
        (
            {"decision_rule": {"kind": "vote", "description": "", "class_names": [], "ood": {}}},
            "decision_rule",
        ),
    ],
)
def test_a_card_that_breaks_the_schema_names_the_field(change, field):
    with pytest.raises(model_card.CardError, match=f"model card field {field}"):
        model_card.validate(_card(**change))


def test_headline_metrics_read_the_evaluators_keys():
    card = _card(
        evaluation={"split": "eval", "metrics": {"auc": 0.93, "binary_accuracy": 0.8, "AUC": 0.1}}
    )
    rows = {m["key"]: m["value"] for m in model_card.headline_metrics(card)}
    assert rows == {
        "auc": 0.93,
        "binary_accuracy": 0.8,
        "precision": None,
        "recall": None,
        "example_count": None,
    }


def test_small_samples_are_named():
    warnings = model_card.small_sample_warnings(4, [120, 12], ["neg", "pos"], "test")
    assert len(warnings) == 2 and "4 patients" in warnings[0] and "12 images of pos" in warnings[1]
    assert model_card.small_sample_warnings(12, [30, 31], ["neg", "pos"], "test") == []


def test_the_cards_file_is_read_and_written_through_one_module(tmp_path):
    model_dir = str(tmp_path / "model")
    path = model_card.path_in(model_dir)
    assert path.endswith(contract.MODEL_CARD_RELPATH)
    assert model_card.load(path, missing_ok=True) == {}
    model_card.save(path, {"model_name": "m", "metrics": {"auc": float("nan")}})
    updated = model_card.update(path, {"calibration": {"temperature": 1.5}})
    assert model_card.load(path) == updated
    assert updated["metrics"]["auc"] is None  # `dumps` writes NaN as null, never bare NaN
    assert "NaN" not in open(path).read()
    with pytest.raises(model_card.CardError):
        (tmp_path / "bad.json").write_text("[1]")
        model_card.load(str(tmp_path / "bad.json"))
