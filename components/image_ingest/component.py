"""ImageExampleGen: a file-based TFX ExampleGen that reads an image folder.

`pipeline/pipeline.py` wires it first in the DAG. It is the TFX guide's way for a custom
file source: `FileBasedExampleGen` with a custom Beam executor (executor.py) and a
driver that fingerprints the image tree (driver.py). Its one output is the standard
``Examples`` artifact: GZIP TFRecords of ARCHITECTURE.md's record format in
train/eval/test splits grouped by patient (the output config), with the ingest report
(``ingest_report.json`` / ``.md``, every file accounted for) beside the splits. Both
runners compile it like any ExampleGen: no String artifact, no dynamic parameter.
"""

from __future__ import annotations

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.types import channel, component_spec, standard_artifacts, standard_component_specs

from components.image_ingest import driver, executor


class ImageExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's spec plus what reading images needs."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.TASK_KEY: component_spec.ExecutionParameter(type=str),
        executor.LAYOUT_KEY: component_spec.ExecutionParameter(type=str),
        executor.VALIDATION_KEY: component_spec.ExecutionParameter(type=str),
        executor.SHARD_SIZE_KEY: component_spec.ExecutionParameter(type=int),
        # 1: each record also carries its segmentation mask (`mask_raw`; the U-Net variant).
        executor.INCLUDE_MASKS_KEY: component_spec.ExecutionParameter(type=int, optional=True),
        # A digest of the tree given by whoever starts the run (see executor.TREE_FINGERPRINT_KEY).
        executor.TREE_FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str, optional=True),
        executor.MIN_EVAL_KEY: component_spec.ExecutionParameter(type=int, optional=True),
        executor.NEAR_DUP_KEY: component_spec.ExecutionParameter(type=int, optional=True),
    }


class ImageExampleGen(FileBasedExampleGen):
    """Reads IDC, class-folder or CSV-manifest image roots into patient-grouped tf.Examples."""

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.ImageTreeDriver

    def __init__(
        self,
        image_root: str,
        task: str,
        output_config: example_gen_pb2.Output,
        layout: str = "auto",
        validation: str = "structure",
        shard_size: int = 500,
        include_masks: bool = False,
        tree_fingerprint: str | data_types.RuntimeParameter | None = None,
        min_eval_patients: int = 0,
        near_duplicate_bits: int = -1,
    ):
        """Args:
        image_root: the folder of images (local path or gs://).
        task: a `breastdx_core.contract` task name (classes, label folders).
        output_config: the splits, by hash buckets of ``patient_id``.
        layout: "auto", "idc", "class_folders" or "manifest".
        validation: how deeply each file is checked (`image_files.inspect`).
        shard_size: files per Beam element.
        include_masks: add the merged segmentation mask as ``mask_raw``.
        tree_fingerprint: a digest of the tree supplied at run time (a KFP run
            parameter), for engines that run no ExampleGen driver.
        min_eval_patients: > 0: patient-stratified splits (components/image_ingest/
            splits.py) with at least this many eval patients where the data allow;
            0: TFX's hash buckets alone.
        near_duplicate_bits: >= 0: images whose pHashes differ in at most this many
            bits share a split (near_duplicates.py); -1: off.
        """
        spec = ImageExampleGenSpec(
            input_base=image_root,
            input_config=example_gen_pb2.Input(
                splits=[
                    example_gen_pb2.Input.Split(name="images", pattern=driver.IMAGE_TREE_PATTERN)
                ]
            ),
            output_config=output_config,
            custom_config=None,
            range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            task=task,
            layout=layout,
            validation=validation,
            shard_size=shard_size,
            include_masks=1 if include_masks else None,
            tree_fingerprint=tree_fingerprint,
            min_eval_patients=int(min_eval_patients) or None,
            near_duplicate_bits=int(near_duplicate_bits) if near_duplicate_bits >= 0 else None,
            examples=channel.Channel(type=standard_artifacts.Examples),
        )
        # FileBasedExampleGen.__init__ builds its own spec; the base class takes ours.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
