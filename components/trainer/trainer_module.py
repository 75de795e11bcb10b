"""The Trainer module: a keras.applications backbone + the study's DNN head.

TFX's Trainer component calls `run_fn(fn_args)`; hyperparameters arrive in
``fn_args.custom_config`` (built by `PipelineConfig.trainer_config()`) and, when the
pipeline tunes, the Tuner's best values in ``fn_args.hyperparameters`` (they win).
TFX's Tuner component calls `tuner_fn(fn_args)` (KerasTuner over learning rate,
dropout, unfrozen backbone layers, optimizer and batch size). The model trains on the
Transform component's output and is exported with the Transform graph inside every
signature (see `export_serving_model`). `breastdx compare` (pipeline/lab/compare.py)
calls `run_fn` once per backbone: there is no second training code path.

Keras 2 (tf-keras) is imported by name, so the module builds the same model whatever
TF_USE_LEGACY_KERAS says; TFT's transform layer and TFMA are tf-keras too.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import keras_tuner
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components.batchnorm import recalibrate_batchnorm
from pipeline import contract
from pipeline.lab import diagnostics

log = logging.getLogger(__name__)

# name -> (constructor, its preprocess_input, smallest input side it accepts)
BACKBONES: Dict[str, Tuple[Callable[..., keras.Model], Callable[[tf.Tensor], tf.Tensor], int]] = {
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input, 32),
    "densenet201": (keras.applications.DenseNet201, keras.applications.densenet.preprocess_input, 32),
    "inception_resnet_v2": (keras.applications.InceptionResNetV2,
                            keras.applications.inception_resnet_v2.preprocess_input, 75),
    "nasnet_mobile": (keras.applications.NASNetMobile, keras.applications.nasnet.preprocess_input, 32),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50.preprocess_input, 32),
    "resnet50_v2": (keras.applications.ResNet50V2, keras.applications.resnet_v2.preprocess_input, 32),
    "resnet152_v2": (keras.applications.ResNet152V2, keras.applications.resnet_v2.preprocess_input, 32),
    "xception": (keras.applications.Xception, keras.applications.xception.preprocess_input, 71),
}
# The CNN-LSTM hybrid: a backbone's pooled features read as a sequence by an LSTM
# before the same DNN head (`lstm_backbone` picks the feature extractor).
CNN_LSTM = "cnn_lstm"
ARCHITECTURES = tuple(BACKBONES) + (CNN_LSTM,)
OPTIMIZERS: Dict[str, Callable[..., keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
}
# What the Tuner may choose; run_fn takes these keys from its best hyperparameters.
TUNABLE = ("learning_rate", "dropout", "unfreeze_last", "optimizer", "batch_size")
HEATMAP_OUTPUT = "heatmap"
SIGNATURE_EXPLAIN = "explain"  # bytes in; probabilities plus a Grad-CAM heatmap out


def resolve_weights(weights: Any) -> Any:
    """None, "imagenet" (Keras downloads where the internet is reachable) or a local
    weights file, which must exist."""
    if weights in (None, "", "none", "None"):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not tf.io.gfile.exists(weights):
        raise FileNotFoundError(f"backbone weights file {weights!r} does not exist (set weights to None, "
                                f"'imagenet' or an existing .h5 file)")
    return weights


def build_model(config: Dict[str, Any]) -> keras.Model:
    """Backbone + head, compiled.

    Args:
        config: ``backbone`` (a key of `ARCHITECTURES`), ``weights``, ``model_size``,
            ``class_names``, ``unfreeze_last``, ``dense_units``, ``dropout``,
            ``learning_rate``, ``optimizer`` (a key of `OPTIMIZERS`); for ``cnn_lstm``
            also ``lstm_backbone``, ``lstm_steps`` and ``lstm_units``.

    Returns:
        A model taking ``image`` float32 [batch, h, w, 3] in [0, 1] (the Transform
        output) and returning softmax probabilities float32 [batch, n_classes].
    """
    architecture = config["backbone"]
    if architecture not in ARCHITECTURES:
        raise ValueError(f"backbone must be one of {ARCHITECTURES}, got {architecture!r}")
    feature_backbone = config.get("lstm_backbone", "vgg16") if architecture == CNN_LSTM else architecture
    constructor, preprocess, min_side = BACKBONES[feature_backbone]
    height, width = config["model_size"]
    inputs = keras.Input(shape=(height, width, contract.MODEL_CHANNELS), name=contract.TRANSFORMED_IMAGE_KEY)
    x = inputs
    if min(height, width) < min_side:  # some backbones need more pixels than a patch has
        height = width = min_side
        x = keras.layers.Resizing(height, width, name="backbone_resize")(x)
    weights = resolve_weights(config.get("weights"))
    if weights is not None:
        # Pretrained weights expect their own normalisation (caffe / tf / torch modes).
        # It lives in the model, so the Transform graph is the same for every backbone.
        x = keras.layers.Rescaling(contract.PIXEL_MAX, name="to_pixels")(x)
        x = keras.layers.Lambda(preprocess, name="backbone_preprocess")(x)
    backbone = constructor(include_top=False, weights=weights, input_tensor=x,
                           input_shape=(height, width, contract.MODEL_CHANNELS))
    backbone_layers = backbone_layers_of(backbone, inputs)
    # Pretrained: the lower layers keep their generic features and only the top
    # `unfreeze_last` adapt. Random initialisation has nothing worth keeping: all train
    # (frozen random layers measured near chance on the synthetic set).
    unfreeze = int(config.get("unfreeze_last", 4)) if weights is not None else len(backbone_layers)
    for index, layer in enumerate(backbone_layers):
        layer.trainable = index >= len(backbone_layers) - unfreeze
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    dropout = float(config.get("dropout", 0.3))
    if architecture == CNN_LSTM:
        # The pooled feature vector as `lstm_steps` chunks: the LSTM reads the
        # channel groups in order, the hybrid of the study's CNN-LSTM variant.
        features = int(x.shape[-1])
        steps = int(config.get("lstm_steps", 8))
        if features % steps:
            raise ValueError(f"lstm_steps={steps} must divide the {feature_backbone} feature size {features}")
        x = keras.layers.Reshape((steps, features // steps), name="to_sequence")(x)
        x = keras.layers.LSTM(int(config.get("lstm_units", 64)), name="lstm")(x)
    first, second = config.get("dense_units", (512, 128))
    x = keras.layers.Dense(first, activation="relu", name="dense_1")(x)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.Dense(second, activation="relu", name="dense_2")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    outputs = keras.layers.Dense(len(config["class_names"]), activation="softmax",
                                 name=contract.OUTPUT_PROBABILITIES)(x)
    model = keras.Model(inputs, outputs, name=f"{architecture}_dnn")
    optimizer = config.get("optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {optimizer!r}")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate=float(config.get("learning_rate", 1e-3))),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def backbone_layers_of(backbone: keras.Model, model_input: tf.Tensor) -> List[keras.layers.Layer]:
    """The backbone's own layers (built on our input tensor, Keras also lists the
    layers before it: the input, resize and normalisation layers)."""
    ours = {"backbone_resize", "to_pixels", "backbone_preprocess", model_input.node.layer.name}
    return [layer for layer in backbone.layers if layer.name not in ours]


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer with a 4-D output before the head: Grad-CAM's feature map."""
    pool = model.get_layer("pool")
    index = model.layers.index(pool)
    for layer in reversed(model.layers[:index]):
        if len(layer.output.shape) == 4:
            return layer
    raise ValueError("model has no 4-D feature map before its pooling layer")


def _augmenter(seed: int) -> keras.Sequential:
    """Rotation +-20 degrees, zoom 1.0-1.2 (zoom in only), horizontal and vertical flips."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(20 / 360, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom((-0.2, 0.0), fill_mode="reflect", seed=seed),
        ],
        name="augment",
    )


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int, train: bool,
             config: Dict[str, Any]) -> tf.data.Dataset:
    """Batches of (features, label) from transformed examples; the train split is
    shuffled and (if configured) augmented, which is why augmentation lives here
    and not in the Transform graph that serving shares."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=contract.TRANSFORMED_LABEL_KEY,
                                       shuffle=train, shuffle_seed=config.get("seed")),
        tf_transform_output.transformed_metadata.schema,
    )
    if train and config.get("augment", True):
        augment = _augmenter(config.get("seed", 0))
        dataset = dataset.map(
            lambda features, label: ({**features, contract.TRANSFORMED_IMAGE_KEY: augment(
                features[contract.TRANSFORMED_IMAGE_KEY], training=True)}, label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def class_counts(file_pattern: Sequence[str], num_classes: int) -> np.ndarray:
    """Images per class in transformed TFRecords (for the class weights)."""
    files = [f for pattern in file_pattern for f in tf.io.gfile.glob(pattern)]
    spec = {contract.TRANSFORMED_LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    labels = (tf.data.TFRecordDataset(files, compression_type="GZIP")
              .batch(1024).map(lambda x: tf.io.parse_example(x, spec)[contract.TRANSFORMED_LABEL_KEY]))
    counts = np.zeros(num_classes, dtype=np.int64)
    for batch in labels.as_numpy_iterator():
        counts += np.bincount(batch, minlength=num_classes)[:num_classes]
    return counts


def class_weights(counts: np.ndarray) -> Dict[int, float]:
    """Inverse-frequency weights, 1.0 on average over examples; absent classes get 1."""
    total = counts.sum()
    return {i: (float(total) / (len(counts) * c) if c else 1.0) for i, c in enumerate(counts)}


def export_serving_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput, path: str,
                         config: Dict[str, Any]) -> None:
    """Saves the model with the Transform graph inside every signature:

    * ``serving_default``: ``image_bytes`` [None] tf.string (raw PNG/JPEG bytes, what TF
      Serving's REST API carries as {"b64": ...}) -> probabilities, class_name,
      class_index, positive_probability.
    * ``serving_examples``: ``examples`` [None] serialized tf.Example (only
      ``image_raw`` is read) -> the same outputs (Evaluator, batch jobs).
    * ``explain``: like serving_default, plus a Grad-CAM ``heatmap`` [None, h, w] in [0, 1].
    * ``transform_features``: serialized tf.Example -> the transformed image.
    """
    model.tft_layer = tf_transform_output.transform_features_layer()
    class_names = tf.constant(config["class_names"])
    positive = int(config.get("positive_index", len(config["class_names"]) - 1))
    conv_layer = last_conv_layer(model)
    explain_model = keras.Model(model.inputs, [conv_layer.output, model.output])

    def transformed_image(encoded: tf.Tensor) -> tf.Tensor:
        features = model.tft_layer({contract.IMAGE_KEY: tf.reshape(encoded, [-1, 1])})
        return features[contract.TRANSFORMED_IMAGE_KEY]

    def named_outputs(probabilities: tf.Tensor) -> Dict[str, tf.Tensor]:
        index = tf.argmax(probabilities, axis=-1)
        return {
            contract.OUTPUT_PROBABILITIES: probabilities,
            contract.OUTPUT_CLASS_NAME: tf.gather(class_names, index),
            contract.OUTPUT_CLASS_INDEX: index,
            contract.OUTPUT_POSITIVE: probabilities[:, positive],
        }

    def parse_images(examples: tf.Tensor) -> tf.Tensor:
        # Serving has only the image: parsing patient_id, height... would make them required.
        parsed = tf.io.parse_example(examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
        return parsed[contract.IMAGE_KEY]

    bytes_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)
    examples_spec = tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_EXAMPLES)

    @tf.function(input_signature=[bytes_spec])
    def serve_bytes(image_bytes):
        return named_outputs(model(transformed_image(image_bytes), training=False))

    @tf.function(input_signature=[examples_spec])
    def serve_examples(examples):
        return named_outputs(model(transformed_image(parse_images(examples)), training=False))

    @tf.function(input_signature=[bytes_spec])
    def explain(image_bytes):
        images = transformed_image(image_bytes)
        with tf.GradientTape() as tape:
            feature_map, probabilities = explain_model(images, training=False)
            top = tf.argmax(probabilities, axis=-1)
            score = tf.gather(probabilities, top, batch_dims=1)
        grads = tape.gradient(score, feature_map)
        channel_weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(channel_weights * feature_map, axis=-1))
        cam = cam / (tf.reduce_max(cam, axis=[1, 2], keepdims=True) + 1e-8)
        cam = tf.image.resize(cam[..., tf.newaxis], tf.shape(images)[1:3])[..., 0]
        return {**named_outputs(probabilities), HEATMAP_OUTPUT: cam}

    @tf.function(input_signature=[examples_spec])
    def transform_features(examples):
        return {contract.TRANSFORMED_IMAGE_KEY: transformed_image(parse_images(examples))}

    signatures = {
        contract.SIGNATURE_BYTES: serve_bytes,
        contract.SIGNATURE_EXAMPLES: serve_examples,
        SIGNATURE_EXPLAIN: explain,
        contract.SIGNATURE_TRANSFORM: transform_features,
    }
    # Without the optimizer state: the SavedModel is a third of the size and is copied
    # by Trainer, Pusher and the serving root. Without Keras's per-layer call traces:
    # every consumer (TFMA as tf_generic, the model server, the report) loads the
    # signatures with tf.saved_model.load, and tracing each of NASNet's or DenseNet's
    # hundreds of layers took minutes on 2 CPU cores.
    model.save(path, save_format="tf", include_optimizer=False, signatures=signatures, save_traces=False)


def write_model_card(path: str, config: Dict[str, Any], model: keras.Model, history: Dict[str, List[float]],
                     counts: np.ndarray, seconds: float, training_diagnostics: Optional[Dict[str, Any]] = None,
                     tuned: Optional[Dict[str, Any]] = None) -> None:
    """The Trainer's part of the model card (Pusher adds version, metrics, run id)."""
    card = {
        "intended_use": contract.RESEARCH_ONLY + " Trained for research on breast images; "
                        "not validated for clinical decisions.",
        "task": config.get("task"),
        "class_names": list(config["class_names"]),
        "positive_class": config["class_names"][int(config.get("positive_index", 1))],
        "input_contract": {
            "signature": contract.SIGNATURE_BYTES,
            "input": f"{contract.SERVING_INPUT_BYTES}: [None] string, raw PNG/JPEG/GIF/BMP bytes "
                     "(REST: {\"b64\": ...})",
            "model_size": list(config["model_size"]),
            "outputs": [contract.OUTPUT_PROBABILITIES, contract.OUTPUT_CLASS_NAME, contract.OUTPUT_CLASS_INDEX,
                        contract.OUTPUT_POSITIVE],
            "explain_signature": SIGNATURE_EXPLAIN,
        },
        "backbone": config["backbone"],
        "weights": config.get("weights") or "none (random initialisation)",
        "hyperparameters": {k: config[k] for k in ("unfreeze_last", "dense_units", "dropout", "learning_rate",
                                                   "optimizer", "batch_size", "epochs", "seed") if k in config},
        "parameters": {"total": int(model.count_params()),
                       "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights))},
        "train_class_counts": {n: int(c) for n, c in zip(config["class_names"], counts)},
        "training_history": history,
        "train_seconds": round(seconds, 1),
    }
    if config["backbone"] == CNN_LSTM:
        card["hyperparameters"].update({k: config.get(k) for k in ("lstm_backbone", "lstm_steps", "lstm_units")})
    if tuned:
        card["tuned_hyperparameters"] = tuned
    if training_diagnostics is not None:
        card["training_diagnostics"] = training_diagnostics
    card_path = os.path.join(path, contract.MODEL_CARD_RELPATH)
    tf.io.gfile.makedirs(os.path.dirname(card_path))
    with tf.io.gfile.GFile(card_path, "w") as handle:
        json.dump(card, handle, indent=1)


def tuned_values(hyperparameters: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The Tuner's best values (its `best_hyperparameters` artifact: a KerasTuner
    HyperParameters config) restricted to `TUNABLE`; {} without one."""
    if not hyperparameters:
        return {}
    values = keras_tuner.HyperParameters.from_config(hyperparameters).values
    return {k: v for k, v in values.items() if k in TUNABLE}


def fit_model(model: keras.Model, train: tf.data.Dataset, evaluation: tf.data.Dataset, config: Dict[str, Any],
              train_steps: int, eval_steps: int, class_weight: Optional[Dict[int, float]] = None,
              log_dir: Optional[str] = None, extra_callbacks: Sequence[keras.callbacks.Callback] = ()
              ) -> Tuple[Dict[str, List[float]], Dict[str, Any], float]:
    """Trains ``model`` with the study's callbacks and the training diagnostics.

    Returns:
        (history {metric: [per epoch]}, the diagnostics report, seconds of training).
    """
    epochs = max(1, int(config.get("epochs", 1)))
    steps_per_epoch = max(1, math.ceil(train_steps / epochs))
    # One un-augmented eval batch: the diagnostics measure gradients on the same data each time.
    probe_features, probe_labels = next(iter(evaluation))
    probe_size = int(config.get("diagnostics_probe", 16))
    probe = ({k: v[:probe_size] for k, v in probe_features.items()} if isinstance(probe_features, dict)
             else probe_features[:probe_size], probe_labels[:probe_size])
    checks = diagnostics.TrainingDiagnostics(probe, diagnostics.Thresholds(**config.get("diagnostics", {})))
    # A randomly initialised network validates with batch-norm statistics still near
    # their initial values (recalibrated only after fitting): its val_loss misleads, so
    # the schedule and early stopping follow the training loss there.
    monitor = "val_loss" if resolve_weights(config.get("weights")) is not None else "loss"
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=config.get("lr_factor", 0.2), patience=1,
                                          min_lr=config.get("min_learning_rate", 1e-4)),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=int(config.get("early_stopping_patience", 3)),
                                      restore_best_weights=True),
        checks,
        *extra_callbacks,
    ]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    # A handful of steps (`breastdx compare`'s small budget) costs less eagerly than
    # tracing and optimising a graph of hundreds of layers (minutes on 2 CPU cores).
    model.run_eagerly = bool(config.get("run_eagerly", False))
    started = time.time()
    history = model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=evaluation,
                        validation_steps=max(1, eval_steps or 1), class_weight=class_weight,
                        callbacks=callbacks, verbose=2)
    seconds = time.time() - started
    clean_history = {k: [float(v) for v in values] for k, values in history.history.items()}
    return clean_history, checks.report(), seconds


STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")
BATCHNORM_BATCHES = 16  # un-augmented train batches that re-estimate batch-norm statistics


def distribution_strategy(name: Optional[str]) -> tf.distribute.Strategy:
    """The tf.distribute strategy a cluster run asks for (kubeflow_runner sets
    ``distribution_strategy`` in custom_config): mirrored over the GPUs of one node,
    multi-worker over several (TF_CONFIG from the cluster), or none (local runs)."""
    name = name or "none"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "none":
        return tf.distribute.get_strategy()  # the default: no distribution
    raise ValueError(f"distribution_strategy must be one of {STRATEGIES}, got {name!r}")


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer's entry point: train, then export the serving model and its card."""
    tuned = tuned_values(getattr(fn_args, "hyperparameters", None))
    config = {**dict(fn_args.custom_config), **tuned}
    if tuned:
        log.info("Trainer: the Tuner's best hyperparameters %s", tuned)
    keras.utils.set_random_seed(int(config.get("seed", 0)))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size = int(config.get("batch_size", 32))
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size, True, config)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, batch_size, False, config)

    counts = class_counts(fn_args.train_files, len(config["class_names"]))
    log.info("Trainer: train split class counts %s", dict(zip(config["class_names"], counts.tolist())))
    weights = class_weights(counts) if config.get("class_weights", True) else None

    with distribution_strategy(config.get("distribution_strategy")).scope():
        model = build_model(config)
    history, report, seconds = fit_model(model, train, evaluation, config, fn_args.train_steps,
                                         fn_args.eval_steps, class_weight=weights, log_dir=fn_args.model_run_dir)
    if resolve_weights(config.get("weights")) is None:
        # Few steps leave the moving statistics near 0/1 and the exported model saturated
        # (components/batchnorm.py); pretrained backbones keep their ImageNet statistics.
        plain = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size, False, config)
        recalibrate_batchnorm(model, [features[contract.TRANSFORMED_IMAGE_KEY]
                                      for features, _ in plain.take(BATCHNORM_BATCHES)])
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir, config)
    write_model_card(fn_args.serving_model_dir, config, model, history, counts, seconds, report, tuned or None)


class _HyperModel(keras_tuner.HyperModel):
    """The Trainer's model over the search space of ``config["tuner_space"]``.

    ``make_datasets(batch_size) -> (train, eval)``: the batch size is a hyperparameter,
    so the datasets are made per trial.
    """

    def __init__(self, config: Dict[str, Any], make_datasets: Callable[[int], Tuple[tf.data.Dataset, Any]],
                 class_weight: Optional[Dict[int, float]] = None):
        super().__init__(name="breastdx")
        self.config = config
        self.make_datasets = make_datasets
        self.class_weight = class_weight

    def declare(self, hp: keras_tuner.HyperParameters) -> Dict[str, Any]:
        space = self.config.get("tuner_space", {})
        return {
            "learning_rate": hp.Choice("learning_rate", space.get("learning_rate", [1e-4, 3e-4, 1e-3])),
            "dropout": hp.Choice("dropout", space.get("dropout", [0.2, 0.3, 0.5])),
            "unfreeze_last": hp.Choice("unfreeze_last", space.get("unfreeze_last", [2, 4, 8])),
            "optimizer": hp.Choice("optimizer", space.get("optimizer", ["adam", "rmsprop", "sgd"])),
            "batch_size": hp.Choice("batch_size", space.get("batch_size", [16, 32])),
        }

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        return build_model({**self.config, **self.declare(hp)})

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, **kwargs) -> Dict[str, float]:
        # KerasTuner's own callbacks are Keras 3 objects; this model is tf-keras, so they
        # stay out and the trial reports its objective as a number instead.
        kwargs.pop("callbacks", None)
        train, evaluation = self.make_datasets(int(hp.get("batch_size")))
        history = model.fit(train, validation_data=evaluation, class_weight=self.class_weight, verbose=2,
                            **kwargs)
        return {"val_loss": float(min(history.history["val_loss"]))}


class _RandomSearch(keras_tuner.RandomSearch):
    """KerasTuner's random search for a tf-keras model.

    KerasTuner 1.4 checks that models are Keras 3 and adds Keras 3 checkpoint callbacks;
    this module's models are tf-keras (TFT and TFMA need them), so each trial builds and
    fits through the hypermodel directly, as `Tuner.run_trial`'s documentation shows.
    Only the best hyperparameters are used (by TFX's Tuner), never a stored trial model.
    """

    def run_trial(self, trial, *args, **kwargs) -> Dict[str, float]:
        keras.backend.clear_session()
        hp = trial.hyperparameters
        return self.hypermodel.fit(hp, self.hypermodel.build(hp), *args, **kwargs)


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """TFX Tuner's entry point: a KerasTuner random search over `TUNABLE`.

    ``custom_config`` is the Trainer's (plus ``tuner_trials`` and ``tuner_space``); each
    trial trains for ``fn_args.train_steps`` steps and is scored by its best val_loss.
    """
    config = dict(fn_args.custom_config)
    seed = int(config.get("seed", 0))
    keras.utils.set_random_seed(seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output) if fn_args.transform_output else None

    def make_datasets(batch_size: int) -> Tuple[tf.data.Dataset, tf.data.Dataset]:
        return (input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, batch_size, True, config),
                input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, batch_size, False, config))

    weights = None
    if config.get("class_weights", True) and fn_args.train_files:
        weights = class_weights(class_counts(fn_args.train_files, len(config["class_names"])))
    tuner = _RandomSearch(
        _HyperModel(config, make_datasets, weights),
        objective=keras_tuner.Objective("val_loss", "min"),
        max_trials=int(config.get("tuner_trials", 4)),
        seed=seed,
        directory=fn_args.working_dir,
        project_name="breastdx_tuning",
        overwrite=True,
    )
    epochs = max(1, int(config.get("tuner_epochs", 1)))
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={
        "epochs": epochs,
        "steps_per_epoch": max(1, math.ceil((fn_args.train_steps or 1) / epochs)),
        "validation_steps": max(1, fn_args.eval_steps or 1),
    })
