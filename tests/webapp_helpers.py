"""Pictures and model cards for the web app's tests (``test_webapp_*``): H&E-like tissue, a
portrait photograph, an ultrasound frame, and a version of the tiny model whose card holds
an input contract measured on that tissue and says it was trained on synthetic data."""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile

import numpy as np
from PIL import Image, ImageDraw
from serving_helpers import CARD, add_version

from breastdx_core import contract, decision

PINK = (232, 170, 205)  # eosin-stained stroma
RED_STROMA = (230, 80, 100)  # strongly eosinophilic: the tiny model calls it positive
BLUE_STROMA = (140, 110, 210)  # haematoxylin-heavy: the tiny model calls it negative
STROMAS = (PINK, RED_STROMA, BLUE_STROMA)
PURPLE = (110, 50, 150)  # haematoxylin-stained nuclei


def encode(pixels: np.ndarray, fmt: str = "PNG", mode: str = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(buffer, format=fmt)
    return buffer.getvalue()


def tissue(height: int, width: int, seed: int, stroma=PINK) -> np.ndarray:
    """Stroma with purple nuclei and stain noise: H&E-like pixels, uint8 [h, w, 3]."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(stroma, np.float32) + rng.normal(0, 10, (height, width, 3))
    yy, xx = np.mgrid[:height, :width]
    for _ in range(height * width // 120):
        y, x, r = rng.integers(0, height), rng.integers(0, width), rng.integers(2, 5)
        pixels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = np.asarray(PURPLE) + rng.normal(0, 8, 3)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def portrait(height: int = 300, width: int = 240) -> np.ndarray:
    """A smooth studio portrait: blue-grey backdrop, a skin-toned face, dark hair."""
    image = Image.new("RGB", (width, height), (70, 95, 130))
    draw = ImageDraw.Draw(image)
    draw.ellipse([40, 10, 200, 190], fill=(45, 32, 25))  # hair
    draw.ellipse([60, 40, 180, 220], fill=(224, 176, 146))  # face
    draw.rectangle([30, 220, 210, 300], fill=(30, 60, 110))  # shirt
    gradient = np.linspace(0.85, 1.1, width)[None, :, None]
    return np.clip(np.asarray(image, np.float32) * gradient, 0, 255).astype(np.uint8)


def ultrasound(height: int = 200, width: int = 260, seed: int = 0) -> np.ndarray:
    """A grey speckle frame with a dark lesion, as RGB (most ultrasound PNGs are)."""
    rng = np.random.default_rng(seed)
    grey = np.clip(rng.rayleigh(60, (height, width)), 0, 255)
    yy, xx = np.mgrid[:height, :width]
    grey[((yy - 100) / 40) ** 2 + ((xx - 130) / 60) ** 2 <= 1] *= 0.3
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)


def contract_card() -> dict:
    """The tiny model's card with an input contract measured on :func:`tissue` patches and
    the synthetic-data flag the demo's cards carry."""
    card = copy.deepcopy(CARD)
    side = contract.IDC_PATCH[0]
    patches = []
    for index, stroma in enumerate(STROMAS):
        sheet = tissue(
            6 * side, 8 * side, seed=1234 + index, stroma=stroma
        )  # cut from tissue, as the IDC set's
        patches += [
            encode(sheet[y : y + side, x : x + side])
            for y in range(0, 6 * side, side)
            for x in range(0, 8 * side, side)
        ]
    card["input_contract"]["accepted"] = decision.measure_accepted(
        patches, "train (synthetic H&E-like)"
    )
    card["evaluation"]["synthetic_data"] = True
    return card


def add_contract_version(serving_root, version: int, source: str) -> str:
    """Copies the tiny model as ``version`` with :func:`contract_card` as its card."""
    target = add_version(serving_root, version, source)
    path = os.path.join(target, contract.MODEL_CARD_RELPATH)
    card = contract_card()
    card["version"] = version
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(card, handle)
    return target


def unreadable_patch_zip(count: int) -> bytes:
    """A zip of ``count`` IDC-named patches of one patient, none of them an image."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"1_idx5_x{50 * i}_y0_class0.png", b"hello")
    return buffer.getvalue()
