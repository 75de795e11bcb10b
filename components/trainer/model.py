"""The classifier: one backbone registry and the study's DNN head, and which layers
train in each phase of fine-tuning.

Called by the Trainer module (`trainer_module.run_fn`), its fit loop (`training.py`:
`set_trainable` between the head and fine-tuning phases), its Tuner (`tuning.py`), the
model lab (`breastdx compare`) and the tests. Nothing here reads the environment; the
only files read are backbone weights the settings name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tf_keras as keras

from breastdx_core import contract, model_card, pretrained, registry
from components.pretrained import convert as lite
from components.trainer.sections import TrainerSettings


def _pixels(x: tf.Tensor) -> tf.Tensor:
    # EfficientNet-Lite scales 0..255 pixels itself ((x - 127) / 128, in the network).
    return x


# name -> (constructor, its preprocess_input on 0..255 pixels, smallest input side it accepts).
_CONSTRUCTORS: dict[
    str, tuple[Callable[..., keras.Model], Callable[[tf.Tensor], tf.Tensor], int]
] = {
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input, 32),
    "densenet201": (
        keras.applications.DenseNet201,
        keras.applications.densenet.preprocess_input,
        32,
    ),
    "inception_resnet_v2": (
        keras.applications.InceptionResNetV2,
        keras.applications.inception_resnet_v2.preprocess_input,
        75,
    ),
    "nasnet_mobile": (
        keras.applications.NASNetMobile,
        keras.applications.nasnet.preprocess_input,
        32,
    ),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50.preprocess_input, 32),
    "resnet50_v2": (
        keras.applications.ResNet50V2,
        keras.applications.resnet_v2.preprocess_input,
        32,
    ),
    "resnet152_v2": (
        keras.applications.ResNet152V2,
        keras.applications.resnet_v2.preprocess_input,
        32,
    ),
    "xception": (keras.applications.Xception, keras.applications.xception.preprocess_input, 71),
    **{
        name: (functools.partial(lite.efficientnet_lite, name), _pixels, 32)
        for name in pretrained.NAMES
    },
}
# The names are breastdx_core/registry.py's (TF-free: the CLI, the settings, the lab); a name
# there without a constructor here is a KeyError at import.
BACKBONES = {name: _CONSTRUCTORS[name] for name in registry.IMAGE_BACKBONES}
# The CNN-LSTM hybrid: a backbone's pooled features read as a sequence by an LSTM
# before the same DNN head (`lstm_backbone` picks the feature extractor).
CNN_LSTM = registry.CNN_LSTM
ARCHITECTURES = registry.BACKBONES
# Our layers between the model input and the backbone (not the backbone's own).
_OWN_LAYERS = ("backbone_resize", "to_pixels", "backbone_preprocess")
OPTIMIZERS: dict[str, Callable[..., keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
}


def resolve_weights(weights: Any) -> Any:
    """None, "imagenet" (Keras downloads where the internet is reachable; for the
    registry-installed backbones, the converted file: `backbone_weights`) or a local
    weights file, which must exist."""
    if weights in (None, "", "none", "None"):
        return None
    if weights == pretrained.IMAGENET:
        return pretrained.IMAGENET
    if not tf.io.gfile.exists(weights):
        raise FileNotFoundError(
            f"backbone weights file {weights!r} does not exist (set weights to None, "
            f"'imagenet' or an existing .h5 file)"
        )
    return weights


def constructor_weights(backbone: str, weights: Any, pretrained_dir: str | None) -> str | None:
    """What the backbone constructor gets: None, "imagenet", or a weights file (for the
    registry-installed backbones "imagenet" is the checked file `make weights` wrote in
    ``pretrained_dir``). The mammography and segmentation Trainers share it."""
    weights = resolve_weights(weights)
    if weights == pretrained.IMAGENET and backbone in pretrained.PRETRAINED:
        return pretrained.require(pretrained_dir, backbone)
    return weights


def backbone_weights(backbone: str, settings: TrainerSettings) -> str | None:
    """`constructor_weights` of the classifier's training section."""
    training = settings.training
    return constructor_weights(backbone, training.weights, training.pretrained_dir)


def weights_provenance(settings: TrainerSettings) -> dict[str, Any]:
    """`backbone_provenance` of the classifier's feature backbone (the LSTM's for
    ``cnn_lstm``)."""
    training = settings.training
    architecture = training.backbone
    backbone = training.lstm_backbone if architecture == CNN_LSTM else architecture
    return backbone_provenance(backbone, training.weights, training.pretrained_dir)


def backbone_provenance(backbone: str, weights: Any, pretrained_dir: str | None) -> dict[str, Any]:
    """``{"weights_provenance": {...}}`` for the model card (breastdx_core/model_card.py):
    "random"; the package (name, version, its file's SHA-256) and the converted file's
    SHA-256; Keras's download; or a local file with its SHA-256. The mammography and
    segmentation Trainers share it."""
    weights = resolve_weights(weights)
    if weights is None:
        return model_card.weights_provenance(
            "random", backbone=backbone, note="random initialisation: no pretrained weights"
        )
    if weights == pretrained.IMAGENET and backbone in pretrained.PRETRAINED:
        record = pretrained.provenance(pretrained_dir, backbone) or {}
        return model_card.weights_provenance(
            "package",
            file=record.get("file"),
            sha256=record.get("sha256"),
            license=pretrained.LICENSE,
            note=f"converted from PyTorch by {record.get('converter')}",
            backbone=backbone,
            dataset="ImageNet-1k",
            package=record.get("package"),
            package_version=record.get("version"),
            package_file=record.get("source_file"),
            package_file_sha256=record.get("source_sha256"),
        )
    if weights == pretrained.IMAGENET:
        return model_card.weights_provenance(
            "keras.applications download", backbone=backbone, dataset="ImageNet-1k"
        )
    local = weights if tf.io.gfile.exists(weights) and "://" not in weights else None
    return model_card.weights_provenance(
        "file",
        file=weights,
        backbone=backbone,
        sha256=pretrained.sha256_file(local) if local else None,
    )


def build_model(settings: TrainerSettings) -> keras.Model:
    """Backbone + head, compiled.

    Args:
        settings: the task's ``model_size`` and ``class_names``; the training section's
            ``backbone`` (a key of `ARCHITECTURES`), ``weights``, ``unfreeze_last``,
            ``pretrained_dir``, ``dense_units``, ``dropout``, ``learning_rate``,
            ``optimizer`` (a key of `OPTIMIZERS`), ``backbone_input_size`` (0: the
            Transform's size; else the side the model resizes its input to before the
            backbone); for ``cnn_lstm`` also ``lstm_backbone``, ``lstm_steps`` and
            ``lstm_units``.

    Returns:
        A model taking ``image`` float32 [batch, h, w, 3] in [0, 1] (the Transform
        output) and returning softmax probabilities float32 [batch, n_classes]. With
        pretrained weights the top ``unfreeze_last`` backbone layers train (the fit loop
        freezes them for the head phase: `set_trainable`); batch-norm layers of a
        pretrained backbone stay frozen, in inference mode.
    """
    training = settings.training
    architecture = training.backbone
    if architecture not in ARCHITECTURES:
        raise ValueError(f"backbone must be one of {ARCHITECTURES}, got {architecture!r}")
    feature_backbone = training.lstm_backbone if architecture == CNN_LSTM else architecture
    constructor, preprocess, min_side = BACKBONES[feature_backbone]
    height, width = settings.task.model_size
    inputs = keras.Input(
        shape=(height, width, contract.MODEL_CHANNELS), name=contract.TRANSFORMED_IMAGE_KEY
    )
    x = inputs
    # The backbone's own input side: pretrained features were learnt at ImageNet's scale,
    # so the model may enlarge the Transform's output itself (the Transform graph stays one
    # for every backbone and size); some backbones also need more pixels than a patch has.
    side = int(training.backbone_input_size or 0)
    if side > 0 and (side, side) != (height, width):
        height = width = max(side, min_side)
        x = keras.layers.Resizing(height, width, interpolation="bilinear", name="backbone_resize")(
            x
        )
    elif min(height, width) < min_side:
        height = width = min_side
        x = keras.layers.Resizing(height, width, name="backbone_resize")(x)
    weights = backbone_weights(feature_backbone, settings)
    if weights is not None:
        # Pretrained weights expect their own normalisation (caffe / tf / torch modes).
        # It lives in the model, so the Transform graph is the same for every backbone.
        x = keras.layers.Rescaling(contract.PIXEL_MAX, name="to_pixels")(x)
        x = keras.layers.Lambda(preprocess, name="backbone_preprocess")(x)
    elif feature_backbone in pretrained.PRETRAINED:
        # EfficientNet-Lite's input scaling is part of the network, random or not.
        x = keras.layers.Rescaling(contract.PIXEL_MAX, name="to_pixels")(x)
    backbone = constructor(
        include_top=False,
        weights=weights,
        input_tensor=x,
        input_shape=(height, width, contract.MODEL_CHANNELS),
    )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    dropout = float(training.dropout)
    if architecture == CNN_LSTM:
        # The pooled feature vector as `lstm_steps` chunks: the LSTM reads the
        # channel groups in order, the hybrid of the study's CNN-LSTM variant.
        features = int(x.shape[-1])
        steps = int(training.lstm_steps)
        if features % steps:
            raise ValueError(
                f"lstm_steps={steps} must divide the {feature_backbone} feature size {features}"
            )
        x = keras.layers.Reshape((steps, features // steps), name="to_sequence")(x)
        x = keras.layers.LSTM(int(training.lstm_units), name="lstm")(x)
    first, second = training.dense_units
    x = keras.layers.Dense(first, activation="relu", name="dense_1")(x)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.Dense(second, activation="relu", name="dense_2")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    outputs = keras.layers.Dense(
        len(settings.task.class_names), activation="softmax", name=contract.OUTPUT_PROBABILITIES
    )(x)
    model = keras.Model(inputs, outputs, name=f"{architecture}_dnn")
    # Pretrained: the lower layers keep their generic features and only the top
    # `unfreeze_last` adapt. Random initialisation has nothing worth keeping: all train
    # (frozen random layers measured near chance on the synthetic set).
    set_trainable(model, int(training.unfreeze_last) if weights is not None else None)
    compile_model(model, settings, float(training.learning_rate))
    return model


def compile_model(model: keras.Model, settings: TrainerSettings, learning_rate: float) -> None:
    """Compiles with a fresh optimizer (after `set_trainable` changes what trains)."""
    optimizer = settings.training.optimizer
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {optimizer!r}")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's own layers in the built classifier: everything before the
    pooling layer except the input and our resize/normalisation layers."""
    pool_index = model.layers.index(model.get_layer("pool"))
    return [
        layer
        for layer in model.layers[:pool_index]
        if layer.name not in _OWN_LAYERS and not isinstance(layer, keras.layers.InputLayer)
    ]


def set_trainable(model: keras.Model, unfreeze_last: int | None) -> int:
    """Which backbone layers train: all (``None``: random initialisation), or the top
    ``unfreeze_last`` layers with trainable weights (0: the backbone frozen, the head
    phase). Batch-norm layers of a pretrained backbone stay frozen, which in Keras 2 also
    runs them in inference mode: small medical batches would otherwise overwrite the
    ImageNet statistics the convolutions were trained with. Returns the number of
    backbone layers that train. Recompile afterwards (`compile_model`)."""
    layers = backbone_layers(model)
    if unfreeze_last is None:
        for layer in layers:
            layer.trainable = True
        return len(layers)
    # Convolutions and dense layers: batch-norm and the input Normalization do not count.
    weighted = [
        layer
        for layer in layers
        if layer.weights
        and not isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Normalization))
    ]
    top = (
        set(id(layer) for layer in weighted[len(weighted) - unfreeze_last :])
        if unfreeze_last > 0
        else set()
    )
    for layer in layers:
        layer.trainable = id(layer) in top
    return len(top)


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer with a 4-D output before the head: Grad-CAM's feature map."""
    pool = model.get_layer("pool")
    index = model.layers.index(pool)
    for layer in reversed(model.layers[:index]):
        if len(layer.output.shape) == 4:
            return layer
    raise ValueError("model has no 4-D feature map before its pooling layer")
