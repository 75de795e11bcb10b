"""ImageIngest: a TFX component that turns an image root into TFRecords.

`pipeline/pipeline.py` wires it first in the DAG. Its `records` output holds the
TFRecords (ARCHITECTURE.md's record format) and the ingest report; `records_base`
is a String artifact naming the TFRecords folder, which ImportExampleGen takes as
its `input_base` (a dynamic exec property, so it also compiles for Kubeflow v2).
"""
from __future__ import annotations

from typing import Optional

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact, channel, component_spec, standard_artifacts

from components.image_ingest import executor


class ImageRecords(artifact.Artifact):
    """TFRecords of encoded images plus ingest_report.json / .md."""

    TYPE_NAME = "breastdx.ImageRecords"  # KFP v2 wants namespace.Name


class ImageIngestSpec(component_spec.ComponentSpec):
    PARAMETERS = {
        executor.ROOT_KEY: component_spec.ExecutionParameter(type=str),
        executor.LAYOUT_KEY: component_spec.ExecutionParameter(type=str),
        executor.TASK_KEY: component_spec.ExecutionParameter(type=str),
        executor.VALIDATION_KEY: component_spec.ExecutionParameter(type=str),
        executor.SHARD_SIZE_KEY: component_spec.ExecutionParameter(type=int),
        # Changes when the files under image_root change, so TFX's cache cannot
        # serve records of an older tree (see layouts.fingerprint).
        executor.FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str, optional=True),
        # 1: each record also carries its segmentation mask (`mask_raw`; the U-Net variant).
        executor.INCLUDE_MASKS_KEY: component_spec.ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {
        "records": component_spec.ChannelParameter(type=ImageRecords),
        "records_base": component_spec.ChannelParameter(type=standard_artifacts.String),
    }


class ImageIngest(base_beam_component.BaseBeamComponent):
    """Reads IDC, class-folder or CSV-manifest image roots into tf.Example TFRecords."""

    SPEC_CLASS = ImageIngestSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, image_root: str, task: str, layout: str = "auto", validation: str = "structure",
                 shard_size: int = 500, input_fingerprint: Optional[str] = None, include_masks: bool = False):
        spec = ImageIngestSpec(
            image_root=image_root,
            layout=layout,
            task=task,
            validation=validation,
            shard_size=shard_size,
            input_fingerprint=input_fingerprint,
            include_masks=1 if include_masks else None,
            records=channel.Channel(type=ImageRecords),
            records_base=channel.Channel(type=standard_artifacts.String),
        )
        super().__init__(spec=spec)
