"""The mammography run: CBIS-DDSM release -> patches -> patch classifier -> whole-image
classifier -> heatmap -> pushed models.

`breastdx mammo-demo` (pipeline/mammo/cli.py) calls `run(MammoConfig(...))`; the e2e
test calls it on a tiny synthetic release. Steps:

1. read the release's CSVs and images (`cbis.read_release`), synthetic data if the
   data root is empty;
2. resize every mammogram and its ROI masks to ``image_size`` keeping the aspect ratio
   (1152x896 in the study), extract the S10 patch set from the train split and S from
   the test split, and store them as class folders (``<workdir>/cbis/patches``: the
   standard pipeline reads them with ``breastdx demo --task cbis --data-root ...``);
3. train the ResNet50 patch classifier in three stages, the whole-image classifier in
   two (`models`), evaluate both on the release's test split (patient-disjoint);
4. write a sliding-window heatmap of the first test mammogram;
5. push both models in TF Serving's layout (``<serving_root>/<name>/<version>/``) with a
   model card, when they pass their floors (``min_patch_accuracy``, ``min_whole_auc``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.segmentation.metrics import roc_auc
from pipeline import contract, synthetic
from pipeline.mammo import cbis, heatmap, images, models, patches

log = logging.getLogger("breastdx")

PATCH_MODEL_SUFFIX = "-patch"
WHOLE_MODEL_SUFFIX = "-whole"
SIGNATURE_HEATMAP = "heatmap"
WHOLE_CLASS_NAMES = ("benign", "malignant")

# The study's schedules assume ImageNet weights. Without them (weights=None: nothing can
# be downloaded here) frozen random features learn nothing, so the synthetic demo keeps
# the stages but trains every stage at 1e-3 and briefly.
DEMO_PATCH_SCHEDULE = (models.Stage("head", 1e-3, 1), models.Stage("top", 1e-3, 2), models.Stage("all", 1e-3, 5))
DEMO_WHOLE_SCHEDULE = (models.Stage("head", 1e-3, 3), models.Stage("all", 1e-4, 3))


@dataclasses.dataclass
class MammoConfig:
    """Settings of the mammography run (the study's values in comments)."""

    workdir: str = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "workdir")
    data_root: str = ""  # default <workdir>/data/cbis (synthetic when empty)
    model_name: str = "breastdx-cbis"
    image_size: Tuple[int, int] = (contract.CBIS_IMAGE_SIZE[0] // 4, contract.CBIS_IMAGE_SIZE[1] // 4)  # (1152, 896)
    patch_size: int = contract.CBIS_DEMO_PATCH_SIZE  # 224
    train_patch_set: str = "S10"
    test_patch_set: str = "S"
    heatmap_stride: int = 0  # 0: patch_size // 4
    weights: Optional[str] = None  # None, "imagenet" or a local .h5 file
    patch_schedule: Sequence[models.Stage] = DEMO_PATCH_SCHEDULE  # models.PATCH_SCHEDULE
    whole_schedule: Sequence[models.Stage] = DEMO_WHOLE_SCHEDULE  # models.WHOLE_SCHEDULE
    patch_batch_size: int = 32
    whole_batch_size: int = 4
    synthetic_patients: int = 24
    seed: int = 7
    min_patch_accuracy: float = 0.4  # 5 classes: chance is 0.2
    min_whole_auc: float = 0.0  # the whole-image floor (the synthetic set is tiny)

    def __post_init__(self) -> None:
        if not self.data_root:
            self.data_root = os.path.join(self.workdir, "data", "cbis")
        if not self.heatmap_stride:
            self.heatmap_stride = max(1, self.patch_size // 4)

    @property
    def out_dir(self) -> str:
        return os.path.join(self.workdir, "cbis")

    @property
    def serving_root(self) -> str:
        return os.path.join(self.workdir, "serving")


@dataclasses.dataclass
class Prepared:
    """Resized mammograms and patch arrays, per split."""

    images: Dict[str, np.ndarray]  # split -> float32 [n, H, W, 1]
    labels: Dict[str, np.ndarray]  # split -> int64 [n] (1 malignant)
    ids: Dict[str, List[str]]
    patch_x: Dict[str, np.ndarray]
    patch_y: Dict[str, np.ndarray]
    patch_counts: Dict[str, Dict[str, int]]


def ensure_data(config: MammoConfig) -> bool:
    """Writes the synthetic release if the data root is missing or empty."""
    if os.path.isdir(config.data_root) and os.listdir(config.data_root):
        return False
    log.info("writing a synthetic CBIS-DDSM release to %s", config.data_root)
    synthetic.write_cbis(config.data_root, patients=config.synthetic_patients, seed=config.seed)
    return True


def prepare(config: MammoConfig) -> Prepared:
    """Reads, resizes and cuts patches (steps 1-2 of the module docstring)."""
    abnormalities, problems = cbis.read_release(config.data_root)
    if not abnormalities:
        raise cbis.CbisError(f"no usable abnormality in {config.data_root}: {problems[:3]}")
    prepared = Prepared({}, {}, {}, {}, {}, {})
    patch_root = os.path.join(config.out_dir, "patches")
    grouped: Dict[str, List[Tuple[np.ndarray, int]]] = {"train": [], "test": []}
    collected: Dict[str, List[patches.Patch]] = {"train": [], "test": []}
    for k, mammogram in enumerate(cbis.mammograms(abnormalities)):
        image = images.resize_keep_aspect(images.read_image(mammogram.image_path), config.image_size).numpy()
        rois = [(images.resize_mask(images.read_mask(a.roi_mask_path), config.image_size), a.patch_class)
                for a in mammogram.abnormalities]
        patch_set = config.train_patch_set if mammogram.split == "train" else config.test_patch_set
        found = patches.extract_patches(image, rois, config.patch_size, patch_set, seed=config.seed * 1000 + k,
                                        source=mammogram.image_id)
        patches.write_patch_folders(patch_root, found, mammogram.patient_id, mammogram.image_id)
        collected[mammogram.split].extend(found)
        grouped[mammogram.split].append((image, int(mammogram.malignant)))
        prepared.ids.setdefault(mammogram.split, []).append(mammogram.image_id)
    for split in ("train", "test"):
        prepared.images[split] = np.stack([g[0] for g in grouped[split]])[..., None].astype(np.float32) \
            if grouped[split] else np.zeros((0, *config.image_size, 1), np.float32)
        prepared.labels[split] = np.array([g[1] for g in grouped[split]], np.int64)
        prepared.patch_x[split], prepared.patch_y[split] = patches.as_arrays(collected[split])
        prepared.patch_counts[split] = {name: int(np.sum(prepared.patch_y[split] == i))
                                        for i, name in enumerate(contract.CBIS_PATCH_CLASSES)}
    log.info("CBIS-DDSM: %d mammograms (train %d, test %d); patches %s", sum(len(v) for v in prepared.ids.values()),
             len(prepared.ids.get("train", [])), len(prepared.ids.get("test", [])), prepared.patch_counts)
    return prepared


def _malignant_probability(probabilities: np.ndarray) -> np.ndarray:
    names = contract.CBIS_PATCH_CLASSES
    return probabilities[:, names.index("calcification_malignant")] + probabilities[:, names.index("mass_malignant")]


def evaluate_patches(model: keras.Model, x: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    """Accuracy over the 5 classes, the confusion matrix, and the AUC of P(malignant)."""
    if not len(x):
        return {"n": 0}
    probabilities = model.predict(x, batch_size=64, verbose=0)
    predicted = probabilities.argmax(axis=1)
    n = len(contract.CBIS_PATCH_CLASSES)
    confusion = np.zeros((n, n), np.int64)
    for t, p in zip(y, predicted):
        confusion[t, p] += 1
    malignant = np.isin(y, [contract.CBIS_PATCH_CLASSES.index("calcification_malignant"),
                            contract.CBIS_PATCH_CLASSES.index("mass_malignant")])
    return {"n": int(len(y)), "accuracy": float(np.mean(predicted == y)),
            "malignant_auc": roc_auc(_malignant_probability(probabilities), malignant),
            "confusion_matrix": confusion.tolist(), "class_names": list(contract.CBIS_PATCH_CLASSES)}


def evaluate_whole(model: keras.Model, x: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    if not len(x):
        return {"n": 0}
    p = model.predict(x, batch_size=4, verbose=0)[:, 0]
    return {"n": int(len(y)), "auc": roc_auc(p, y.astype(bool)), "accuracy": float(np.mean((p > 0.5) == y)),
            "malignant": int(y.sum())}


def _decode_grey(image_bytes: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """[None] encoded bytes -> grey float32 [None, h, w, 1] in [0, 1], aspect kept and padded
    with the training code's own resize."""
    def one(encoded):
        image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
        image = tf.cast(image, tf.float32) / contract.PIXEL_MAX
        return images.resize_keep_aspect(image, size)
    return tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([size[0], size[1], 1], tf.float32))


def export_patch_model(model: keras.Model, path: str, patch_size: int) -> None:
    """``serving_default``: ``image_bytes`` [None] (PNG/JPEG patches) -> probabilities
    [None, 5], class_name, class_index, positive_probability (P(malignant calcification) +
    P(malignant mass))."""
    class_names = tf.constant(list(contract.CBIS_PATCH_CLASSES))
    malignant = [contract.CBIS_PATCH_CLASSES.index("calcification_malignant"),
                 contract.CBIS_PATCH_CLASSES.index("mass_malignant")]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)])
    def serve(image_bytes):
        probabilities = model(_decode_grey(image_bytes, (patch_size, patch_size)), training=False)
        index = tf.argmax(probabilities, axis=-1)
        return {contract.OUTPUT_PROBABILITIES: probabilities, contract.OUTPUT_CLASS_NAME: tf.gather(class_names, index),
                contract.OUTPUT_CLASS_INDEX: index,
                contract.OUTPUT_POSITIVE: tf.reduce_sum(tf.gather(probabilities, malignant, axis=1), axis=1)}

    model.save(path, save_format="tf", include_optimizer=False, signatures={contract.SIGNATURE_BYTES: serve})


def export_whole_model(model: keras.Model, patch_model: keras.Model, path: str, image_size: Sequence[int],
                       patch_size: int, stride: int) -> None:
    """``serving_default``: ``image_bytes`` [None] (whole mammograms, any size) ->
    probabilities [None, 2] (benign, malignant), class_name, class_index,
    positive_probability. ``heatmap``: the same bytes -> ``heatmap`` [None, rows, cols, 5]
    patch-class probabilities on a window grid (stride ``stride``) of the resized image."""
    class_names = tf.constant(list(WHOLE_CLASS_NAMES))
    bytes_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)

    @tf.function(input_signature=[bytes_spec])
    def serve(image_bytes):
        p = model(_decode_grey(image_bytes, image_size), training=False)[:, 0]
        probabilities = tf.stack([1 - p, p], axis=1)
        index = tf.cast(p > 0.5, tf.int64)
        return {contract.OUTPUT_PROBABILITIES: probabilities, contract.OUTPUT_CLASS_NAME: tf.gather(class_names, index),
                contract.OUTPUT_CLASS_INDEX: index, contract.OUTPUT_POSITIVE: p}

    @tf.function(input_signature=[bytes_spec])
    def heat(image_bytes):
        grey = _decode_grey(image_bytes, image_size)
        windows = tf.image.extract_patches(grey, [1, patch_size, patch_size, 1], [1, stride, stride, 1],
                                           [1, 1, 1, 1], "VALID")
        shape = tf.shape(windows)
        flat = tf.reshape(windows, [-1, patch_size, patch_size, 1])
        probabilities = patch_model(flat, training=False)
        return {SIGNATURE_HEATMAP: tf.reshape(probabilities, [shape[0], shape[1], shape[2],
                                                              len(contract.CBIS_PATCH_CLASSES)])}

    model.heatmap_model = patch_model
    model.save(path, save_format="tf", include_optimizer=False,
               signatures={contract.SIGNATURE_BYTES: serve, SIGNATURE_HEATMAP: heat})


def _version(base: str) -> int:
    existing = [int(v) for v in (os.listdir(base) if os.path.isdir(base) else []) if v.isdigit()]
    return max([int(time.time())] + [v + 1 for v in existing])


def push(save: Any, serving_root: str, name: str, card: Dict[str, Any]) -> str:
    """Saves a model as ``<serving_root>/<name>/<version>/`` with its card; returns the path.
    ``save(path)`` writes the SavedModel."""
    base = os.path.join(serving_root, name)
    version = _version(base)
    path = os.path.join(base, str(version))
    tmp = path + ".tmp"
    save(tmp)
    card = {**card, "model_name": name, "version": version,
            "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.makedirs(os.path.join(tmp, os.path.dirname(contract.MODEL_CARD_RELPATH)), exist_ok=True)
    with open(os.path.join(tmp, contract.MODEL_CARD_RELPATH), "w") as handle:
        json.dump(card, handle, indent=1, default=float)
    os.replace(tmp, path)  # the model server never sees a half-written version
    return path


def _card(config: MammoConfig, kind: str, metrics: Dict[str, Any], history: List[Dict[str, Any]],
          prepared: Prepared, extra: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "intended_use": contract.RESEARCH_ONLY + " Research on mammograms; not validated for clinical decisions.",
        "task": "cbis",
        "kind": kind,
        "backbone": "resnet50",
        "weights": config.weights or "none (random initialisation)",
        "evaluation": {"split": "test (the release's patient-disjoint split)", "metrics": metrics,
                       "note": "On the synthetic data these numbers say nothing about real mammograms."},
        "training_history": history,
        "patch_counts": prepared.patch_counts,
        "image_size": list(config.image_size),
        "patch_size": config.patch_size,
        **extra,
    }


def run(config: MammoConfig) -> Dict[str, Any]:
    """The whole mammography run (module docstring); returns a summary dict."""
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    ensure_data(config)
    prepared = prepare(config)
    train_x, train_y = prepared.patch_x["train"], prepared.patch_y["train"]

    patch_model = models.build_patch_classifier(config.patch_size, weights=config.weights)
    patch_history = models.train_in_stages(
        patch_model, config.patch_schedule, (train_x, train_y), (prepared.patch_x["test"], prepared.patch_y["test"]),
        "sparse_categorical_crossentropy", ["sparse_categorical_accuracy"], config.patch_batch_size,
        class_weight=models.class_weights(train_y, len(contract.CBIS_PATCH_CLASSES)), seed=config.seed)
    patch_metrics = evaluate_patches(patch_model, prepared.patch_x["test"], prepared.patch_y["test"])
    log.info("patch classifier (test): accuracy %.3f, malignant AUC %s", patch_metrics.get("accuracy", float("nan")),
             patch_metrics.get("malignant_auc"))

    whole_model = models.build_whole_image_classifier(patch_model, config.image_size)
    whole_history = models.train_in_stages(
        whole_model, config.whole_schedule, (prepared.images["train"], prepared.labels["train"]),
        (prepared.images["test"], prepared.labels["test"]), "binary_crossentropy", [keras.metrics.AUC(name="auc")],
        config.whole_batch_size, class_weight=models.class_weights(prepared.labels["train"], 2), seed=config.seed)
    whole_metrics = evaluate_whole(whole_model, prepared.images["test"], prepared.labels["test"])
    log.info("whole-image classifier (test): AUC %s, accuracy %s", whole_metrics.get("auc"),
             whole_metrics.get("accuracy"))

    heatmap_path = ""
    if len(prepared.images["test"]):
        image = prepared.images["test"][0, ..., 0]
        grid, rows, cols = heatmap.sliding_window_heatmap(lambda x: patch_model.predict(x, verbose=0), image,
                                                          config.patch_size, config.heatmap_stride)
        score = heatmap.malignant_map(heatmap.to_image_grid(grid, rows, cols, config.patch_size, image.shape))
        score = score * (image > patches.TISSUE_LEVEL)  # the film around the breast was never a class
        heatmap_path = os.path.join(config.out_dir, f"heatmap_{prepared.ids['test'][0]}.png")
        images.save_png(heatmap_path, heatmap.render_overlay(image, score))
        np.save(heatmap_path[:-4] + ".npy", grid)

    pushed: Dict[str, str] = {}
    if patch_metrics.get("accuracy", 0.0) >= config.min_patch_accuracy:
        card = _card(config, "patch classifier (5 classes)", patch_metrics, patch_history, prepared,
                     {"class_names": list(contract.CBIS_PATCH_CLASSES), "positive_class": "malignant (calc or mass)",
                      "input_contract": {"signature": contract.SIGNATURE_BYTES,
                                         "input": f"{contract.SERVING_INPUT_BYTES}: [None] PNG/JPEG patch bytes"}})
        pushed["patch"] = push(lambda p: export_patch_model(patch_model, p, config.patch_size), config.serving_root,
                               config.model_name + PATCH_MODEL_SUFFIX, card)
    auc = whole_metrics.get("auc")
    if auc is not None and not np.isnan(auc) and auc >= config.min_whole_auc:
        card = _card(config, "whole-image classifier (benign/malignant)", whole_metrics, whole_history, prepared,
                     {"class_names": list(WHOLE_CLASS_NAMES), "positive_class": "malignant",
                      "input_contract": {"signature": contract.SIGNATURE_BYTES,
                                         "input": f"{contract.SERVING_INPUT_BYTES}: [None] PNG/JPEG mammogram bytes",
                                         "heatmap_signature": SIGNATURE_HEATMAP}})
        pushed["whole"] = push(lambda p: export_whole_model(whole_model, patch_model, p, config.image_size,
                                                            config.patch_size, config.heatmap_stride),
                               config.serving_root, config.model_name + WHOLE_MODEL_SUFFIX, card)
    summary = {"patch": patch_metrics, "whole": whole_metrics, "pushed": pushed, "heatmap": heatmap_path,
               "patch_counts": prepared.patch_counts, "seconds": round(time.time() - started, 1),
               "patches_dir": os.path.join(config.out_dir, "patches")}
    with open(os.path.join(config.out_dir, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1, default=float)
    return summary
