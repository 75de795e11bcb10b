"""The pipeline's settings by concern: one typed section per concern (data, training,
evaluation, tuning, segmentation, mammography, Beam) and the task context a module file
needs.

`breastdx_core.configs.PipelineConfig` holds one of each section; a component's
``custom_config`` is the sections it needs in their dictionary form (``{"task": {...},
"training": {...}}``, `custom_config`), and the module file rebuilds the same typed objects
with ``Section.from_dict`` (`from_custom_config`), which refuses an unknown or missing key by
name. No key is renamed on the way: a section's field is called the same in Python, in the
``custom_config`` and, less the section's flat prefix, on the command line and in
``BREASTDX_<NAME>`` (`flat_names`). TF-free and light, so module files import it freely.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from breastdx_core import contract, pretrained
from breastdx_core.registry import BACKBONES, MAMMO_BACKBONES, SEG_ENCODERS

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# EfficientNet-Lite's strided 5x5 convolutions need 32 pixels or more (28 ends in a
# negative size at block6a); ResNet50 runs on 28-pixel patches.
MIN_LITE_PATCH_SIZE = 32
INGEST_VALIDATION = ("structure", "decode")
CALIBRATIONS = ("temperature", "none")
OPERATING_RULES = ("sensitivity", "max_f1", "max_balanced_accuracy")
BEAM_MODES = ("in_memory", "multi_processing")

S = TypeVar("S", bound="Section")
C = TypeVar("C", bound="ComponentSettings")


class SettingsError(ValueError):
    """A section's dictionary form does not match its dataclass (a key unknown or missing)."""


def _frozen(value: Any) -> Any:
    """JSON's lists back to the tuples the dataclasses hold."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _listed(value: Any) -> Any:
    return [_listed(v) for v in value] if isinstance(value, (list, tuple)) else value


def _choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Section:
    """A concern's settings. ``FLAT_PREFIX`` + a field's name is its public flat name (the
    CLI flag, ``BREASTDX_<NAME>``, ``configs.load(name=...)``); a field's ``metadata["flat"]``
    names it where the prefix does not fit."""

    FLAT_PREFIX: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The dictionary form, as JSON carries it (tuples as lists)."""
        return {k: _listed(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any]) -> S:
        """The typed section back from its dictionary form; every key must be a field and
        every field must be given (no default here can disagree with the sender's)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise SettingsError(
                f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(names)}"
            )
        missing = [n for n in names if n not in values]
        if missing:
            raise SettingsError(f"{cls.__name__}: missing setting(s) {', '.join(missing)}")
        return cls(**{n: _frozen(values[n]) for n in names})

    @classmethod
    def flat_name(cls, field: dataclasses.Field) -> str:
        return field.metadata.get("flat", cls.FLAT_PREFIX + field.name)


@dataclasses.dataclass(frozen=True)
class TaskSettings(Section):
    """What a module file knows of the run: the task's classes and image sizes, the seed and
    whether the data are the synthetic set. Derived from the task (`PipelineConfig.task_settings`),
    never set by a flag."""

    task: str
    class_names: tuple[str, ...]
    positive_index: int
    model_size: tuple[int, int]
    native_size: tuple[int, int] | None
    seed: int
    synthetic: bool


@dataclasses.dataclass(frozen=True)
class DataSettings(Section):
    """The synthetic demo sets, ingest and the splits."""

    synthetic_patients: int = 60  # more patients, fewer patches: less lumpy patient splits
    synthetic_patches_per_patient: int = 33
    synthetic_cbis_patients: int = 24
    # "structure": PNG chunk walk + CRCs; "decode": full decode
    ingest_validation: str = "structure"
    ingest_shard_size: int = 500  # files per Beam element
    # splits: hash buckets over patient_id (train:eval:test = 14:3:3 = 70/15/15 %)
    split_buckets: tuple[tuple[str, int], ...] = (("train", 14), ("eval", 3), ("test", 3))
    # Patient-stratified splits (components/image_ingest/splits.py): the hash order of the
    # patients, dealt per stratum (patients with both classes, only one), so the eval split
    # holds at least this many patients and both classes where the data allow. 0: the hash
    # buckets alone.
    min_eval_patients: int = 3
    # Near-duplicates (perceptual hash, components/image_ingest/near_duplicates.py): images
    # whose 64-bit pHashes differ in at most this many bits share one split group. -1: off.
    near_duplicate_bits: int = 4

    def __post_init__(self) -> None:
        _choice("ingest_validation", self.ingest_validation, INGEST_VALIDATION)


@dataclasses.dataclass(frozen=True)
class TrainingSettings(Section):
    """The classifier Trainer's model and schedule; the segmentation and mammography
    Trainers read the shared ones (weights, fine-tuning, epochs, augment) from here too."""

    # IDC's default: docs/decisions/0003-backbone-per-preset.md.
    backbone: str = "vgg16"
    weights: str | None = None  # None, "imagenet" or a local .h5 weights file
    # with pretrained weights: backbone layers trained, from the top (all without)
    unfreeze_last: int = 4
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
    # From random weights (docs/decisions/0003-backbone-per-preset.md).
    learning_rate: float = 1e-4
    min_learning_rate: float = 1e-5
    lr_factor: float = 0.2
    batch_size: int = 32
    # The budget follows the data unless set: 0 train steps = `epochs` full passes over
    # the train split; n > 0 = n steps spread over `epochs` (the synthetic demo's preset,
    # configs.SYNTHETIC_BUDGET). 0 eval steps = the whole eval split at every validation;
    # n > 0 = n batches of a shuffled eval split (every patient can appear).
    train_steps: int = 0
    eval_steps: int = 0
    epochs: int = 8  # callbacks (LR schedule, early stopping on the eval split) act per epoch
    # wall-time budget: training stops at the first batch past it; 0 = none
    max_train_minutes: float = 0.0
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
    early_stopping_patience: int = 3
    class_weights: bool = True
    augment: bool = True
    # H&E stain robustness (components/trainer/stain.py): HED-space jitter of the train
    # split (Tellez et al. 2018; 0 = off, 0.05 = their "light" setting).
    stain_jitter: float = 0.0
    # Colour jitter of the train split (components/trainer/stain.py `color_jitter`):
    # brightness, contrast and saturation scaled by U(1-s, 1+s), hue turned by U(-s/2, s/2)
    # of the colour circle, one draw per image; 0 = off.
    color_jitter: float = 0.0
    # Probabilities of the pushed model calibrated on the eval split ("temperature"
    # scaling baked into the exported model) or left as trained ("none").
    calibration: str = "temperature"
    optimizer: str = "adam"  # adam, rmsprop or sgd (momentum 0.9)
    # the model lab's cnn_lstm: its feature extractor, the pooled features read as
    # `lstm_steps` chunks, the LSTM's width
    lstm_backbone: str = "vgg16"
    lstm_steps: int = 8
    lstm_units: int = 64

    def __post_init__(self) -> None:
        _choice("backbone", self.backbone, BACKBONES)
        _choice("calibration", self.calibration, CALIBRATIONS)


@dataclasses.dataclass(frozen=True)
class EvaluationSettings(Section):
    """Blessing, the EvaluationReport (components/evaluation_report.py,
    breastdx_core/decision.py) and the lab's cross-validation."""

    auc_lower_bound: float = 0.85  # a model no better than chance (0.5) is never pushed
    auc_max_regression: float = 0.01  # vs the latest blessed model
    # The operating threshold the decision rule uses (where conformal coverage cannot be
    # claimed), chosen on the eval patients: "sensitivity" (keeps target_sensitivity),
    # "max_f1" or "max_balanced_accuracy". The card records all three.
    operating_rule: str = "sensitivity"
    # Conformal prediction sets at this coverage, calibrated on the eval split; the OOD
    # threshold flags this fraction of in-distribution eval images; an image whose colour
    # and texture statistics lie farther from the train split's than contract_margin times
    # the farthest train image is out of contract.
    conformal_coverage: float = 0.95
    ood_false_alarm_rate: float = 0.01
    contract_margin: float = 1.5
    contract_images: int = 2000  # train images the input contract is measured on
    target_sensitivity: float = 0.95
    bootstrap_resamples: int = 1000
    cv_folds: int = 5  # `breastdx cv`: patient-disjoint folds (lab/cv.py)

    def __post_init__(self) -> None:
        _choice("operating_rule", self.operating_rule, OPERATING_RULES)


@dataclasses.dataclass(frozen=True)
class TuningSettings(Section):
    """TFX's Tuner before the Trainer (KerasTuner random search) and its search space over
    the training fields of the same names (`space`)."""

    FLAT_PREFIX: ClassVar[str] = "tuner_"

    enabled: bool = dataclasses.field(default=False, metadata={"flat": "tune"})
    trials: int = 4
    train_steps: int = 8  # per trial
    epochs: int = 1
    learning_rates: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    dropouts: tuple[float, ...] = (0.2, 0.3, 0.5)
    unfreeze: tuple[int, ...] = (2, 4, 8)  # only matters with pretrained weights
    optimizers: tuple[str, ...] = ("adam", "rmsprop", "sgd")
    batch_sizes: tuple[int, ...] = (16, 32)

    def space(self) -> dict[str, tuple[Any, ...]]:
        """The choices per `TrainingSettings` field the Tuner may set."""
        return {
            "learning_rate": self.learning_rates,
            "dropout": self.dropouts,
            "unfreeze_last": self.unfreeze,
            "optimizer": self.optimizers,
            "batch_size": self.batch_sizes,
        }


@dataclasses.dataclass(frozen=True)
class SegmentationSettings(Section):
    """The U-Net variant on images with masks (BUSI; ``variant="segment"``)."""

    FLAT_PREFIX: ClassVar[str] = "seg_"

    blackbox: bool = False  # train non-malignant masks as empty; classify by predicted area
    base_filters: int = 16  # U-Net filters at full resolution (doubling per level)
    depth: int = 4  # poolings; model_size sides must divide by 2**depth
    # The U-Net's encoder: "unet" (its own, `base_filters`/`depth`, random weights) or an
    # EfficientNet-Lite name (that backbone with the training `weights`, fine-tuned as the
    # classifier's: decoder first, then the whole at a tenth of the rate).
    encoder: str = "unet"
    learning_rate: float = 1e-3
    batch_size: int = 8

    def __post_init__(self) -> None:
        _choice("seg_encoder", self.encoder, SEG_ENCODERS)


@dataclasses.dataclass(frozen=True)
class MammographySettings(Section):
    """CBIS-DDSM mammograms (``variant="mammo"``, task cbis; data_root = the release).

    Demo sizes: the study's 1152x896 images and 224 patches at a quarter (`breastdx demo
    --full-size` takes the study's sizes and schedules). Schedules: <head|top|all>:<lr>:<epochs>
    stages (components/mammo/models.py); the study's need ImageNet weights, so without them
    every stage trains at 1e-3 and briefly.
    """

    FLAT_PREFIX: ClassVar[str] = "mammo_"

    # The patch classifier's backbone (MAMMO_BACKBONES) with the training `weights`; the
    # cbis preset's is ImageNet EfficientNet-Lite0 (configs.TASK_DEFAULTS).
    backbone: str = "resnet50"
    image_size: tuple[int, int] = (
        contract.CBIS_IMAGE_SIZE[0] // 4,
        contract.CBIS_IMAGE_SIZE[1] // 4,
    )
    patch_size: int = contract.CBIS_DEMO_PATCH_SIZE
    train_patch_set: str = "S10"  # 10 patches per ROI + 10 background per image
    eval_patch_set: str = "S"  # 1 + 1 (eval and test)
    # Splits by patient (components/mammo/cbis.pipeline_splits): test = the release's test
    # split (held out); eval = this share of its train patients, stratified by label.
    eval_fraction: float = 0.2
    heatmap_stride: int = contract.CBIS_DEMO_PATCH_SIZE // 4
    patch_schedule: str = "head:0.001:1,top:0.001:2,all:0.001:5"
    whole_schedule: str = "head:0.001:3,all:0.0001:3"
    patch_batch_size: int = 32
    whole_batch_size: int = 4
    min_whole_auc: float = 0.0  # the Evaluator's floor (the synthetic release is tiny)

    def __post_init__(self) -> None:
        _choice("mammo_backbone", self.backbone, MAMMO_BACKBONES)
        if self.backbone in pretrained.PRETRAINED and self.patch_size < MIN_LITE_PATCH_SIZE:
            raise ValueError(
                f"mammo_patch_size {self.patch_size} is below {MIN_LITE_PATCH_SIZE}, the "
                f"smallest patch {self.backbone} takes (or set mammo_backbone to resnet50)"
            )


@dataclasses.dataclass(frozen=True)
class BeamSettings(Section):
    """Beam's runner for the data components ("in_memory" measured fastest at demo size;
    "multi_processing" for large data)."""

    FLAT_PREFIX: ClassVar[str] = "beam_"

    mode: str = "in_memory"
    workers: int = 0  # 0: one per CPU (multi_processing only)
    extra_args: tuple[str, ...] = dataclasses.field(
        default=(), metadata={"flat": "extra_beam_args"}
    )

    def __post_init__(self) -> None:
        _choice("beam_mode", self.mode, BEAM_MODES)

    def pipeline_args(self) -> list[str]:
        args = ["--runner=DirectRunner"]
        if self.mode == "multi_processing":
            args += [
                "--direct_running_mode=multi_processing",
                f"--direct_num_workers={self.workers}",
            ]
        return args + list(self.extra_args)


@dataclasses.dataclass(frozen=True)
class RuntimeSettings(Section):
    """How a Trainer's ``run_fn`` executes, not what it learns: the cluster compile sets the
    distribution strategy (`kubeflow_runner.configure_trainer`, from ClusterConfig), the
    model lab eager execution for its smoke runs. Not a pipeline setting: an optional
    section of a Trainer's ``custom_config``, absent in a local run."""

    distribution_strategy: str | None = None  # None: the default strategy (one device)
    run_eagerly: bool = False


def flat_names(holder: type[Any]) -> dict[str, tuple[str | None, dataclasses.Field]]:
    """Every public flat name of ``holder`` (a dataclass whose fields are scalars or
    `Section`s) -> (the section's attribute or None for a top-level field, the field).
    Generated from the dataclasses, so a new field is a new flag and variable at once.

    Raises:
        TypeError: two fields claim one flat name.
    """
    names: dict[str, tuple[str | None, dataclasses.Field]] = {}

    def add(flat: str, entry: tuple[str | None, dataclasses.Field]) -> None:
        if flat in names:
            raise TypeError(f"flat setting name {flat!r} is claimed twice")
        names[flat] = entry

    for field in dataclasses.fields(holder):
        kind = field.default_factory if field.default_factory is not dataclasses.MISSING else None
        if isinstance(kind, type) and issubclass(kind, Section):
            for inner in dataclasses.fields(kind):
                add(kind.flat_name(inner), (field.name, inner))
        else:
            add(field.name, (None, field))
    return names


def custom_config(**sections: Section) -> dict[str, dict[str, Any]]:
    """A component's ``custom_config``: the named sections' dictionary forms."""
    return {name: section.to_dict() for name, section in sections.items()}


def from_custom_config(
    custom_config: Mapping[str, Any], **kinds: type[Section]
) -> dict[str, Section]:
    """The typed sections back from a ``custom_config``: ``kinds`` names each expected
    section's class; an unexpected or missing section is an error naming it."""
    unknown = sorted(set(custom_config) - set(kinds))
    if unknown:
        raise SettingsError(f"custom_config: unknown section(s) {', '.join(unknown)}")
    missing = sorted(set(kinds) - set(custom_config))
    if missing:
        raise SettingsError(f"custom_config: missing section(s) {', '.join(missing)}")
    return {name: kind.from_dict(custom_config[name]) for name, kind in kinds.items()}


@dataclasses.dataclass(frozen=True)
class ComponentSettings:
    """A module file's typed ``custom_config``: subclass with one field per section it
    reads (``task: TaskSettings``, ``training: TrainingSettings``...); `from_custom_config`
    rebuilds them from the dictionary form `PipelineConfig.custom_config` sent.

    A field with a default (``runtime: RuntimeSettings | None = None``) is an optional
    section."""

    @classmethod
    def from_custom_config(cls: type[C], custom_config: Mapping[str, Any]) -> C:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        kinds = {f.name: _section_class(hints[f.name]) for f in fields}
        optional = {f.name for f in fields if f.default is not dataclasses.MISSING}
        given = {k: v for k, v in custom_config.items() if k not in optional or v is not None}
        expected = {k: v for k, v in kinds.items() if k not in optional or k in given}
        return cls(**from_custom_config(given, **expected))

    def to_custom_config(self) -> dict[str, dict[str, Any]]:
        """The dictionary form (what the pipeline sends; tests and the lab build it here)."""
        return custom_config(
            **{
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None
            }
        )


def _section_class(hint: Any) -> type[Section]:
    """``X`` of a field annotated ``X`` or ``X | None``."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    return kinds[0]
