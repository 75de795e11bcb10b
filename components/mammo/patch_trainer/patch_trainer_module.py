"""The mammography variant's first Trainer: the 5-class patch classifier.

TFX's Trainer component (id ``PatchTrainer`` in
`pipeline.pipeline.create_mammography_pipeline`) calls `run_fn(fn_args)` on
CbisExampleGen's ``patches``. Settings arrive in ``fn_args.custom_config``
(`records.MammoTrainerSettings`, every one required). A backbone
(``mammography.backbone``: ImageNet EfficientNet-Lite0 in the cbis preset, or the study's ResNet50)
+ global average pooling + softmax, fine-tuned in stages (head, then the top block, then
all: `components.mammo.models`), evaluated on the eval split (held-out train patients), and
exported with ``serving_default`` (components/mammo/export.py). The whole-image
Trainer starts from this SavedModel (its ``base_model`` input).

This file sits in a folder of its own: TFX hashes every file of a module file's folder
into the user-code wheel.
"""

from __future__ import annotations

import logging
import time

import tf_keras as keras
from tfx import v1 as tfx

from breastdx_core import contract
from components.mammo import export, models, records

log = logging.getLogger(__name__)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains, evaluates and exports the patch classifier (module docstring)."""
    config = records.MammoTrainerSettings.from_custom_config(fn_args.custom_config)
    task, training, mammo = config.task, config.training, config.mammography
    started = time.time()
    keras.utils.set_random_seed(task.seed)
    size = (mammo.patch_size, mammo.patch_size)
    x, y = records.load_arrays(fn_args.train_files, size)
    eval_x, eval_y = records.load_arrays(fn_args.eval_files, size)
    log.info("PatchTrainer: %d train and %d eval patches of %dx%d", len(x), len(eval_x), *size)
    model = models.build_patch_classifier(
        size[0],
        weights=training.weights,
        backbone=mammo.backbone,
        pretrained_dir=training.pretrained_dir,
    )
    history = models.train_in_stages(
        model,
        models.parse_schedule(mammo.patch_schedule),
        (x, y),
        (eval_x, eval_y),
        "sparse_categorical_crossentropy",
        ["sparse_categorical_accuracy"],
        mammo.patch_batch_size,
        class_weight=models.class_weights(y, len(contract.CBIS_PATCH_CLASSES)),
        augment=training.augment,
        seed=task.seed,
        label="PatchTrainer",
    )
    metrics = export.evaluate_patches(model, eval_x, eval_y)
    log.info(
        "PatchTrainer: eval accuracy %.3f (5 classes), malignant AUC %s",
        metrics.get("accuracy", float("nan")),
        metrics.get("malignant_auc"),
    )
    export.export_patch_model(model, fn_args.serving_model_dir, size[0])
    export.write_card(
        fn_args.serving_model_dir,
        variant="patch",
        class_names=contract.CBIS_PATCH_CLASSES,
        positive_index=contract.CBIS_PATCH_CLASSES.index("mass_malignant"),
        model_size=size,
        input_description=f'{contract.SERVING_INPUT_BYTES}: [None] PNG/JPEG patch bytes (REST: {{"b64": ...}})',
        outputs=(
            contract.OUTPUT_PROBABILITIES,
            contract.OUTPUT_CLASS_NAME,
            contract.OUTPUT_CLASS_INDEX,
            contract.OUTPUT_POSITIVE,
        ),
        model=model,
        history=history,
        seconds=time.time() - started,
        synthetic=task.synthetic,
        evaluation=metrics,
        backbone=mammo.backbone,
        weights=training.weights or "none (random initialisation)",
        schedule=mammo.patch_schedule,
        **models.weights_provenance(mammo.backbone, training.weights, training.pretrained_dir),
        positive_probability="P(malignant calcification) + P(malignant mass)",
    )
