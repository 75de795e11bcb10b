"""The mammography variant's second Trainer: the whole-image classifier, warm-started
from the patch classifier.

TFX's Trainer component (id ``Trainer`` in
`pipeline.pipeline.create_mammography_pipeline`) calls `run_fn(fn_args)` on
CbisExampleGen's ``mammograms``, with the patch Trainer's model as ``base_model``
(``fn_args.base_model``: its serving SavedModel, loaded back as a tf-keras model).
Settings arrive in ``fn_args.custom_config``
(`records.MammoTrainerSettings`, every one required). The patch
classifier's convolutional backbone runs over the whole fitted mammogram, two ResNet
bottleneck blocks and a sigmoid unit follow (`components.mammo.models`); the export
carries ``serving_default``, ``serving_examples`` (the Evaluator's and the
EvaluationReport's) and the ``heatmap`` signature (components/mammo/export.py), and the
model card holds the patch classifier's card as ``patch_model``; the EvaluationReport
component completes the card before the push.

This file sits in a folder of its own: TFX hashes every file of a module file's folder
into the user-code wheel.
"""

from __future__ import annotations

import logging
import time

import tf_keras as keras
from tfx import v1 as tfx
from tfx.dsl.io import fileio

from breastdx_core import contract, model_card
from components.mammo import cbis, export, models, records

log = logging.getLogger(__name__)


def load_patch_model(path: str) -> keras.Model:
    """The patch Trainer's SavedModel as a tf-keras model (its backbone layer, ``resnet50``
    or ``efficientnet_lite0``, is the backbone the whole-image model reuses)."""
    model = keras.models.load_model(path, compile=False)
    models.backbone_of(model)  # raises ValueError when the base model is not a patch classifier
    return model


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains, evaluates and exports the whole-image classifier (module docstring)."""
    config = records.MammoTrainerSettings.from_custom_config(fn_args.custom_config)
    task, training, mammo = config.task, config.training, config.mammography
    if not fn_args.base_model:
        raise ValueError(
            "Trainer (whole image): no base_model; the pipeline must pass the patch Trainer's model"
        )
    started = time.time()
    keras.utils.set_random_seed(task.seed)
    size = mammo.image_size
    patch_size = mammo.patch_size
    patch_model = load_patch_model(fn_args.base_model)
    patch_card = model_card.load(
        model_card.path_in(fn_args.base_model), files=fileio, missing_ok=True
    )
    x, y = records.load_arrays(fn_args.train_files, size, batch_size=8)
    eval_x, eval_y = records.load_arrays(fn_args.eval_files, size, batch_size=8)
    log.info(
        "Trainer: %d train and %d eval mammograms of %dx%d (malignant: %d train, %d eval)",
        len(x),
        len(eval_x),
        *size,
        int(y.sum()),
        int(eval_y.sum()),
    )
    model = models.build_whole_image_classifier(patch_model, size, weights=training.weights)
    backbone = models.backbone_of(
        model
    ).name  # the patch model's: warm-started, so its weights' record
    history = models.train_in_stages(
        model,
        models.parse_schedule(mammo.whole_schedule),
        (x, y),
        (eval_x, eval_y),
        "binary_crossentropy",
        [keras.metrics.AUC(name="auc")],
        mammo.whole_batch_size,
        class_weight=models.class_weights(y, 2),
        augment=training.augment,
        seed=task.seed,
        label="Trainer",
    )
    metrics = export.evaluate_whole(model, eval_x, eval_y)
    log.info(
        "Trainer: whole-image eval AUC %s, accuracy %s (n=%d)",
        metrics.get("auc"),
        metrics.get("accuracy"),
        metrics.get("n", 0),
    )
    export.export_whole_model(
        model,
        patch_model,
        fn_args.serving_model_dir,
        size,
        patch_size,
        mammo.heatmap_stride,
    )
    export.write_card(
        fn_args.serving_model_dir,
        variant="whole_image",
        class_names=records.WHOLE_CLASS_NAMES,
        positive_index=1,
        model_size=size,
        input_description=f"{contract.SERVING_INPUT_BYTES}: [None] PNG/JPEG mammogram bytes, any size (fitted "
        'with its aspect kept, then padded; REST: {"b64": ...})',
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
        backbone=backbone,
        weights=training.weights or "none (random initialisation)",
        schedule=mammo.whole_schedule,
        **models.weights_provenance(backbone, training.weights, training.pretrained_dir),
        contract_extra={
            "any_size": True,  # decode_grey fits any mammogram: no size limit in the contract
            "heatmap_signature": records.SIGNATURE_HEATMAP,
            "heatmap_output": f"{records.OUTPUT_HEATMAP}: [None, rows, cols, 5] patch-class "
            f"probabilities ({', '.join(contract.CBIS_PATCH_CLASSES)}) of "
            f"{patch_size}-pixel windows every {mammo.heatmap_stride} "
            "pixels of the fitted image",
        },
        image_size=list(size),
        patch_size=patch_size,
        heatmap_stride=mammo.heatmap_stride,
        warm_start="the patch classifier's backbone (Trainer base_model)",
        data_splits=cbis.SPLIT_DESIGN,
        patch_model=patch_card,
    )
