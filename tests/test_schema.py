"""The curated schemas agree with the data contract."""

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from breastdx_core import configs, contract


@pytest.mark.parametrize("task", sorted(contract.TASKS))
def test_schema_matches_contract(task):
    config = configs.load(env={}, task=task)
    schema = text_format.Parse(open(config.schema_path).read(), schema_pb2.Schema())
    features = {f.name: f for f in schema.feature}
    assert set(features) == set(contract.RECORD_KEYS)
    label = features[contract.LABEL_KEY].int_domain
    assert (label.min, label.max) == (0, contract.get_task(task).num_classes - 1)
    assert not features[contract.PATIENT_KEY].HasField(
        "int_domain"
    )  # ids like "10253_idx5" are strings
    assert features[contract.IMAGE_KEY].type == schema_pb2.BYTES
