"""AnomalyGate: stops the pipeline when ExampleValidator found anomalies.

`pipeline/pipeline.py` puts it between ExampleValidator and Transform. TFX 1.16's
ExampleValidator records anomalies but lets the run go on; this component reads them
and fails with one readable line per anomaly, so no model is trained on data that
broke the schema.
"""

import os

from tfx import v1 as tfx
from tfx.types import artifact_utils

from breastdx_core import errors


class DataAnomaliesError(errors.BreastdxError, RuntimeError):
    """The examples do not match the curated schema."""


def describe_anomalies(anomalies_uri: str, split_names: list[str]) -> list[str]:
    """One line per anomalous feature and split: "split 'train': feature 'label': ..."."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.dsl.io import fileio

    lines = []
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")
        with fileio.open(path, "rb") as handle:
            anomalies = anomalies_pb2.Anomalies.FromString(handle.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(
                f"split {split!r}: feature {feature!r}: {info.short_description} ({info.description})"
            )
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(
                f"split {split!r}: data set: {info.short_description} ({info.description})"
            )
    return lines


@tfx.dsl.components.component
def AnomalyGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
    """Raises DataAnomaliesError listing every anomaly; passes quietly when there are none."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    lines = describe_anomalies(anomalies.uri, splits)
    if lines:
        raise DataAnomaliesError(
            "ExampleValidator found anomalies against the curated schema; the run stops here:\n  "
            + "\n  ".join(lines)
        )
