"""The classifier: one backbone registry and the study's DNN head.

Called by the Trainer module (`trainer_module.run_fn`), its Tuner (`tuning.py`), the
model lab (`breastdx compare`) and the tests; nothing here reads files or the environment.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import tensorflow as tf
import tf_keras as keras

from pipeline import contract

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
    feature_backbone = config["lstm_backbone"] if architecture == CNN_LSTM else architecture
    constructor, preprocess, min_side = BACKBONES[feature_backbone]
    height, width = config["model_size"]
    inputs = keras.Input(shape=(height, width, contract.MODEL_CHANNELS), name=contract.TRANSFORMED_IMAGE_KEY)
    x = inputs
    if min(height, width) < min_side:  # some backbones need more pixels than a patch has
        height = width = min_side
        x = keras.layers.Resizing(height, width, name="backbone_resize")(x)
    weights = resolve_weights(config["weights"])
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
    unfreeze = int(config["unfreeze_last"]) if weights is not None else len(backbone_layers)
    for index, layer in enumerate(backbone_layers):
        layer.trainable = index >= len(backbone_layers) - unfreeze
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    dropout = float(config["dropout"])
    if architecture == CNN_LSTM:
        # The pooled feature vector as `lstm_steps` chunks: the LSTM reads the
        # channel groups in order, the hybrid of the study's CNN-LSTM variant.
        features = int(x.shape[-1])
        steps = int(config["lstm_steps"])
        if features % steps:
            raise ValueError(f"lstm_steps={steps} must divide the {feature_backbone} feature size {features}")
        x = keras.layers.Reshape((steps, features // steps), name="to_sequence")(x)
        x = keras.layers.LSTM(int(config["lstm_units"]), name="lstm")(x)
    first, second = config["dense_units"]
    x = keras.layers.Dense(first, activation="relu", name="dense_1")(x)
    x = keras.layers.Dropout(dropout, name="dropout_1")(x)
    x = keras.layers.Dense(second, activation="relu", name="dense_2")(x)
    x = keras.layers.Dropout(dropout, name="dropout_2")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    outputs = keras.layers.Dense(len(config["class_names"]), activation="softmax",
                                 name=contract.OUTPUT_PROBABILITIES)(x)
    model = keras.Model(inputs, outputs, name=f"{architecture}_dnn")
    optimizer = config["optimizer"]
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {optimizer!r}")
    model.compile(
        optimizer=OPTIMIZERS[optimizer](learning_rate=float(config["learning_rate"])),
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
