import os

from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.anomaly_gate import describe_anomalies


def test_anomalies_become_readable_lines(tmp_path):
    for split, bad in (("train", True), ("eval", False)):
        anomalies = anomalies_pb2.Anomalies()
        if bad:
            info = anomalies.anomaly_info["label"]
            info.short_description = "Out-of-range values"
            info.description = "Unexpectedly large value: 7."
        os.makedirs(tmp_path / f"Split-{split}")
        (tmp_path / f"Split-{split}" / "SchemaDiff.pb").write_bytes(anomalies.SerializeToString())
    lines = describe_anomalies(str(tmp_path), ["train", "eval"])
    assert lines == [
        "split 'train': feature 'label': Out-of-range values (Unexpectedly large value: 7.)"
    ]
