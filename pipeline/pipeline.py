"""`create_pipeline()`: the only place where the components are wired.

Both runners call it (`local_runner.py` with LocalDagRunner, `kubeflow_runner.py`
with KubeflowV2DagRunner); they choose paths, the orchestrator and Beam arguments,
nothing else. Every setting comes from a `PipelineConfig` (breastdx_core/configs.py).

    ImageExampleGen (train/eval/test by patient) -> StatisticsGen
      -> ImportSchemaGen (curated) -> ExampleValidator -> AnomalyGate
      -> Transform -> Trainer -> BaselineEvaluator (vs the newest pushed version)
      -> EvaluationReport (report, conformal rule, input contract: the complete card) -> CardPusher
"""

from __future__ import annotations

from typing import Any, NamedTuple

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from breastdx_core import contract
from breastdx_core.configs import (
    MAMMO_PATCH_TRAINER_MODULE_FILE,
    MAMMO_WHOLE_TRAINER_MODULE_FILE,
    SEG_TRAINER_MODULE_FILE,
    SEG_TRANSFORM_MODULE_FILE,
    TRAINER_MODULE_FILE,
    TRANSFORM_MODULE_FILE,
    PipelineConfig,
)
from components.anomaly_gate import AnomalyGate
from components.baseline_evaluator import BaselineEvaluator
from components.card_pusher import CardPusher
from components.evaluation_report import EvaluationReport
from components.image_ingest.component import ImageExampleGen
from components.mammo.ingest import CbisExampleGen
from components.mammo.records import WHOLE_CLASS_NAMES

EXAMPLE_GEN_ID = "ImageExampleGen"  # summary.py and the model lab find its Examples by this id


def split_config(config: PipelineConfig) -> tfx.proto.Output:
    """train/eval/test by hash buckets of patient_id: a patient's images share a split."""
    return tfx.proto.Output(
        split_config=tfx.proto.SplitConfig(
            splits=[
                tfx.proto.SplitConfig.Split(name=name, hash_buckets=buckets)
                for name, buckets in config.data.split_buckets
            ],
            partition_feature_name=contract.PATIENT_KEY,
        )
    )


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Metrics on the patient-grouped eval split, and the blessing: AUC of the positive
    class above an absolute floor (chance is 0.5) and no worse than that of the newest
    model in the push destination, on the same examples (components/baseline_evaluator.py;
    the same on every engine)."""
    task = config.task_spec
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": config.evaluation.auc_lower_bound}
        ),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.evaluation.auc_max_regression},
        ),
    )
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="BinaryAccuracy"),
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="AUC", threshold=auc_threshold),
        tfma.MetricConfig(class_name="ConfusionMatrixAtThresholds", config='{"thresholds": [0.5]}'),
        tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
    ]
    if task.num_classes == 2:
        # `positive_probability` scores the positive class (label 1).
        model_spec = tfma.ModelSpec(
            signature_name=contract.SIGNATURE_EXAMPLES,
            label_key=contract.LABEL_KEY,
            prediction_key=contract.OUTPUT_POSITIVE,
            model_type="tf_generic",
        )
        metrics_specs = [tfma.MetricsSpec(metrics=metrics)]
    else:
        # Several classes: accuracy over all, and the binary metrics one-vs-rest on the
        # positive class (e.g. malignant vs the rest).
        model_spec = tfma.ModelSpec(
            signature_name=contract.SIGNATURE_EXAMPLES,
            label_key=contract.LABEL_KEY,
            prediction_key=contract.OUTPUT_PROBABILITIES,
            model_type="tf_generic",
        )
        metrics_specs = [
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="SparseCategoricalAccuracy"),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            ),
            tfma.MetricsSpec(
                metrics=metrics[1:],
                binarize=tfma.BinarizationOptions(class_ids={"values": [task.positive_index]}),
            ),
        ]
    return tfma.EvalConfig(
        model_specs=[model_spec], slicing_specs=[tfma.SlicingSpec()], metrics_specs=metrics_specs
    )


class _DataStages(NamedTuple):
    example_gen: Any
    statistics_gen: Any
    schema_gen: Any
    example_validator: Any
    anomaly_gate: Any
    transform: Any


def _data_stages(
    config: PipelineConfig,
    tree_fingerprint: Any,
    transform_module: str,
    schema_path: str,
    include_masks: bool = False,
) -> _DataStages:
    """Image folders to transformed examples, shared by both variants:
    ImageExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator
    -> AnomalyGate -> Transform."""
    example_gen = ImageExampleGen(
        image_root=config.data_root,
        task=config.task_spec.name,
        output_config=split_config(config),
        layout=config.layout,
        validation=config.data.ingest_validation,
        shard_size=config.data.ingest_shard_size,
        include_masks=include_masks,
        tree_fingerprint=tree_fingerprint,
        min_eval_patients=config.data.min_eval_patients,
        near_duplicate_bits=config.data.near_duplicate_bits,
    ).with_id(EXAMPLE_GEN_ID)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path).with_id("ImportSchemaGen")
    # With the curated schema TFDV profiles image_raw (image_domain) as bytes; without it, it
    # counts the distinct values of every image's bytes in memory, growing with the set
    # (docs/decisions/0009-curated-schema.md).
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"]
    ).with_id("StatisticsGen")
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id("ExampleValidator")
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"]).with_id(
        "AnomalyGate"
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        **_user_code(transform_module, "preprocessing_fn"),
        custom_config=config.custom_config(),
        splits_config=tfx.proto.SplitsConfig(
            analyze=["train"], transform=["train", "eval", "test"]
        ),
        # No pre/post-transform statistics: StatisticsGen already profiles the raw examples,
        # and TFDV over the transformed pixels (12,288 floats per 64x64 image) costs memory
        # for nothing (bench/scale.py measures the data stages).
        disable_statistics=True,
    ).with_id("Transform")
    transform.add_upstream_node(anomaly_gate)  # anomalies stop the run before any training
    return _DataStages(
        example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate, transform
    )


def _push_destination(config: PipelineConfig) -> tfx.proto.PushDestination:
    """TF Serving's layout: <serving_root>/<model_name>/<integer version>/."""
    return tfx.proto.PushDestination(
        filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=f"{config.serving_root}/{config.model_name}"
        )
    )


def _user_code(module: str, function_arg: str) -> dict:
    return {"module_file": module} if module.endswith(".py") else {function_arg: module}


def create_pipeline(
    config: PipelineConfig,
    beam_pipeline_args: list[str] | None = None,
    metadata_connection_config: Any | None = None,
    tree_fingerprint: Any = None,
    transform_module: str | None = None,
    trainer_module: str | None = None,
) -> tfx.dsl.Pipeline:
    """The TFX pipeline for ``config``.

    Args:
        config: every setting (data root, task, hyperparameters, blessing).
        beam_pipeline_args: Beam flags for the data components (the runner's choice).
        metadata_connection_config: ML Metadata connection (local runs: SQLite).
        tree_fingerprint: a digest of the image tree given at run time (a
            ``RuntimeParameter`` on Kubeflow Pipelines, whose backend runs no ExampleGen
            driver); locally ImageExampleGen's driver fingerprints the tree itself.
        transform_module, trainer_module: a module file (``.py``: TFX packages it, and
            its hash keys the cache) or a dotted function path of the installed package
            (``components.transform.transform_module.preprocessing_fn``; what a cluster
            image runs, nothing packaged or uploaded at compile time). None: the
            variant's module file.
    """
    if config.variant == "mammo":
        return create_mammography_pipeline(
            config,
            beam_pipeline_args,
            metadata_connection_config,
            tree_fingerprint,
            transform_module,
            trainer_module,
        )
    if config.variant == "segment":
        return create_segmentation_pipeline(
            config,
            beam_pipeline_args,
            metadata_connection_config,
            tree_fingerprint,
            transform_module,
            trainer_module,
        )
    transform_module = transform_module or TRANSFORM_MODULE_FILE
    trainer_module = trainer_module or TRAINER_MODULE_FILE
    stages = _data_stages(config, tree_fingerprint, transform_module, config.schema_path)
    transform, schema_gen, example_gen = stages.transform, stages.schema_gen, stages.example_gen

    tuner = None
    if config.tuning.enabled:
        # KerasTuner in the Trainer module's `tuner_fn`; its best values reach run_fn
        # through `hyperparameters` (see components/trainer/trainer_module.py).
        tuner = tfx.components.Tuner(
            **_user_code(trainer_module.replace(".run_fn", ".tuner_fn"), "tuner_fn"),
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.tuning.train_steps),
            eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=config.training.eval_steps),
            custom_config=config.custom_config("training", "tuning"),
        ).with_id("Tuner")

    trainer = tfx.components.Trainer(
        **_user_code(trainer_module, "run_fn"),
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.training.train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=config.training.eval_steps),
        custom_config=config.custom_config("training"),
    ).with_id("Trainer")

    # The "no regression" baseline is the newest pushed version, found by the Evaluator
    # itself: a Resolver would compile to an executor open-source KFP 2 refuses.
    evaluator = BaselineEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_directory=_push_destination(config).filesystem.base_directory,
        eval_config=eval_config(config),
        example_splits=["eval"],
    ).with_id("Evaluator")

    # The report and the complete card before the push, on every engine: the Pusher only publishes.
    report = _evaluation_report(
        config,
        example_gen.outputs["examples"],
        trainer,
        evaluator,
        config.task_spec.class_names,
        config.task_spec.positive_index,
    )

    pusher = CardPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        report=report.outputs["report"],
        push_destination=_push_destination(config),
    ).with_id("Pusher")

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[*stages, *([tuner] if tuner else []), trainer, evaluator, report, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )


def _evaluation_report(
    config: PipelineConfig,
    examples: Any,
    trainer: Any,
    evaluator: Any,
    class_names: Any,
    positive_index: int,
) -> EvaluationReport:
    """EvaluationReport between the Evaluator and the Pusher (both classifier variants):
    scores ``examples``' eval and test splits with the Trainer's model, measures the input
    contract on train, and completes the card."""
    return EvaluationReport(
        examples=examples,
        model=trainer.outputs["model"],
        evaluation=evaluator.outputs["evaluation"],
        class_names=list(class_names),
        positive_index=positive_index,
        coverage=config.evaluation.conformal_coverage,
        false_alarm_rate=config.evaluation.ood_false_alarm_rate,
        target_sensitivity=config.evaluation.target_sensitivity,
        contract_margin=config.evaluation.contract_margin,
        contract_images=config.evaluation.contract_images,
        bootstrap_resamples=config.evaluation.bootstrap_resamples,
        seed=config.seed,
        synthetic=config.synthetic_data,
        operating_rule=config.evaluation.operating_rule,
    ).with_id("EvaluationReport")


def create_segmentation_pipeline(
    config: PipelineConfig,
    beam_pipeline_args: list[str] | None = None,
    metadata_connection_config: Any | None = None,
    tree_fingerprint: Any = None,
    transform_module: str | None = None,
    trainer_module: str | None = None,
) -> tfx.dsl.Pipeline:
    """The U-Net variant (``config.variant == "segment"``) on images with masks (BUSI).

        ImageExampleGen (with mask_raw) -> StatisticsGen
          -> ImportSchemaGen (<task>_segmentation.pbtxt) -> ExampleValidator -> AnomalyGate
          -> Transform (image + mask, one geometry) -> Trainer (U-Net; Dice, Jaccard, TPR,
             FPR and the black-box area classifier on the eval split) -> CardPusher

    TFMA has no segmentation metrics, so the Trainer evaluates and writes them into the
    model card; the Pusher pushes without a blessing. Arguments as `create_pipeline`.
    """
    transform_module = transform_module or SEG_TRANSFORM_MODULE_FILE
    trainer_module = trainer_module or SEG_TRAINER_MODULE_FILE
    stages = _data_stages(
        config,
        tree_fingerprint,
        transform_module,
        config.segmentation_schema_path,
        include_masks=True,
    )
    transform = stages.transform
    trainer = tfx.components.Trainer(
        **_user_code(trainer_module, "run_fn"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=stages.schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=config.training.train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=config.training.eval_steps),
        custom_config=config.custom_config("training", "segmentation"),
    ).with_id("Trainer")
    pusher = CardPusher(
        model=trainer.outputs["model"],
        model_blessing=None,
        push_destination=_push_destination(config),
    ).with_id("Pusher")
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[*stages, trainer, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )


# The mammography variant's run_fn paths in the installed package (what a cluster image runs).
MAMMO_PATCH_RUN_FN = "components.mammo.patch_trainer.patch_trainer_module.run_fn"
MAMMO_WHOLE_RUN_FN = "components.mammo.whole_trainer.whole_trainer_module.run_fn"


def mammography_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Whole-image metrics on the eval split (held-out train patients) through the
    model's ``serving_examples`` signature; blessed when the AUC of P(malignant) reaches
    ``mammo_min_whole_auc``. No change threshold: the variant needs no baseline model."""
    auc = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": config.mammography.min_whole_auc}
        )
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=contract.SIGNATURE_EXAMPLES,
                label_key=contract.LABEL_KEY,
                prediction_key=contract.OUTPUT_POSITIVE,
                model_type="tf_generic",
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name="BinaryAccuracy"),
                    tfma.MetricConfig(class_name="Precision"),
                    tfma.MetricConfig(class_name="Recall"),
                    tfma.MetricConfig(class_name="AUC", threshold=auc),
                    tfma.MetricConfig(
                        class_name="ConfusionMatrixAtThresholds", config='{"thresholds": [0.5]}'
                    ),
                ]
            )
        ],
    )


def _release_fingerprint(data_root: str) -> str:
    """A digest of the release's file names, sizes and times (CbisExampleGen's cache key);
    "" where the root is not a local folder (a cluster passes its own at run time)."""
    import hashlib
    import os

    if not os.path.isdir(data_root):
        return ""
    digest = hashlib.sha256()
    for folder, dirs, names in os.walk(data_root):
        dirs.sort()
        for name in sorted(names):
            stat = os.stat(os.path.join(folder, name))
            digest.update(
                f"{os.path.relpath(os.path.join(folder, name), data_root)}|{stat.st_size}|"
                f"{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()


def create_mammography_pipeline(
    config: PipelineConfig,
    beam_pipeline_args: list[str] | None = None,
    metadata_connection_config: Any | None = None,
    tree_fingerprint: Any = None,
    transform_module: str | None = None,
    trainer_module: str | None = None,
) -> tfx.dsl.Pipeline:
    """The CBIS-DDSM variant (``config.variant == "mammo"``, task cbis; Shen et al. 2019).

        CbisExampleGen (release -> patches + mammograms; by patient: test = the release's
             test split, eval = a stratified share of its train patients, train = the rest)
          -> PatchTrainer (patch classifier on `mammo_backbone`, 5 classes, staged fine-tuning)
          -> Trainer (whole-image classifier; base_model = the patch model: warm start;
             signatures serving_default, serving_examples and heatmap)
          -> Evaluator (TFMA on the eval mammograms; AUC floor)
          -> EvaluationReport (test metrics with n and CIs, decision rule calibrated on
             eval, input contract from train: the complete card) -> CardPusher

    The variant has no Transform: both Trainers and every signature decode and fit an
    image with one function (components/mammo/records.py). ``transform_module`` is
    unused. ``trainer_module``: a dotted path (the installed package, as on a cluster)
    makes both Trainers use the installed run_fns (MAMMO_PATCH_RUN_FN, MAMMO_WHOLE_RUN_FN);
    otherwise (None or a file) the variant's module files, which TFX packages. ``tree_fingerprint``: the cache
    key of the release (None: a digest of the local folder).
    """
    del transform_module  # no Transform in this variant
    installed = bool(trainer_module) and not str(trainer_module).endswith(".py")
    patch_module = MAMMO_PATCH_RUN_FN if installed else MAMMO_PATCH_TRAINER_MODULE_FILE
    whole_module = MAMMO_WHOLE_RUN_FN if installed else MAMMO_WHOLE_TRAINER_MODULE_FILE
    if tree_fingerprint is None:
        tree_fingerprint = _release_fingerprint(config.data_root)
    example_gen = CbisExampleGen(
        **config.mammo_ingest_config(), input_fingerprint=tree_fingerprint
    ).with_id("CbisExampleGen")
    patch_trainer = tfx.components.Trainer(
        **_user_code(patch_module, "run_fn"),
        examples=example_gen.outputs["patches"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.custom_config("training", "mammography"),
    ).with_id("PatchTrainer")
    trainer = tfx.components.Trainer(
        **_user_code(whole_module, "run_fn"),
        examples=example_gen.outputs["mammograms"],
        base_model=patch_trainer.outputs["model"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.custom_config("training", "mammography"),
    ).with_id("Trainer")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["mammograms"],
        model=trainer.outputs["model"],
        eval_config=mammography_eval_config(config),
        example_splits=["eval"],
    ).with_id("Evaluator")
    report = _evaluation_report(
        config,
        example_gen.outputs["mammograms"],
        trainer,
        evaluator,
        WHOLE_CLASS_NAMES,
        WHOLE_CLASS_NAMES.index("malignant"),
    )
    pusher = CardPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        report=report.outputs["report"],
        push_destination=_push_destination(config),
    ).with_id("Pusher")
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, patch_trainer, trainer, evaluator, report, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )
