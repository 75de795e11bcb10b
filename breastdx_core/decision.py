"""One decision rule for every path that answers "what is in this image?".

The card's ``decision_rule`` and ``input_contract.accepted`` (written by the
EvaluationReport component, components/evaluation_report.py) say when the model may
answer at all and what its answer is:

1. *Input contract*: an image whose channels, bit depth, size or colour statistics lie
   outside what the train split held is answered "not assessed: <reason>".
2. *Feature-space OOD score*: the model's ``ood_score`` output (Mahalanobis distance of
   the penultimate layer's features to the train split's class means,
   components/trainer/export.py) above the threshold set on the eval split: "not assessed".
3. *Split-conformal prediction set* (class-conditional, calibrated on the eval split): a
   one-class set is the answer; two or more classes (or none) is "uncertain: refer to a
   pathologist". Where the eval split was too small to claim the stated coverage, the rule
   is the operating threshold instead, and the card says why.

Callers: the model server adds `decide`'s fields to every ``:predict`` response
(serving/server.py), the web app and ``breastdx predict`` use the server's fields or, with
a backend that has none (TF Serving, Vertex AI), call `assess` themselves on the same card.
The calibration functions are called by the EvaluationReport component. TF-free (NumPy,
Pillow): the web app imports it.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

DEFAULT_COVERAGE = 0.95
DEFAULT_FALSE_ALARM = 0.01  # of in-distribution images flagged by the OOD threshold
# An image whose statistics lie farther from the train split's than this many times the
# farthest train image is out of contract.
DEFAULT_MARGIN = 1.5
# Per image: each channel's mean and SD, and the mean absolute difference of neighbouring
# grey pixels (texture: random noise is far rougher than tissue, photographs smoother).
COLOUR_STATS = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "roughness")
_THUMBNAIL = (
    256  # statistics on at most this many pixels a side: the check stays cheap (a patch is 50)
)
_STD_FLOOR = 0.01

STATUS_ASSESSED = "assessed"
STATUS_UNCERTAIN = "uncertain"
STATUS_NOT_ASSESSED = "not_assessed"
UNCERTAIN_TEXT = "uncertain: refer to a pathologist"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # IHDR colour type -> channels
_MODE_CHANNELS = {
    "1": 1,
    "L": 1,
    "P": 3,
    "RGB": 3,
    "YCbCr": 3,
    "LAB": 3,
    "HSV": 3,
    "LA": 2,
    "PA": 2,
    "RGBA": 4,
    "RGBa": 4,
    "CMYK": 4,
    "I": 1,
    "F": 1,
    "I;16": 1,
    "I;16B": 1,
    "I;16L": 1,
}
_MODE_BITS = {"1": 1, "I": 32, "F": 32, "I;16": 16, "I;16B": 16, "I;16L": 16}


@dataclasses.dataclass
class ImageInfo:
    """What an encoded image's header and pixels say (``error`` when it cannot be read)."""

    format: str | None = None
    width: int = 0
    height: int = 0
    channels: int = 0
    bit_depth: int = 0
    colour: list[float] | None = None  # COLOUR_STATS, pixels scaled to [0, 1]
    error: str | None = None


def inspect_image(data: bytes, colour: bool = True) -> ImageInfo:
    """Format, size, channels and bit depth from the header (PNG's IHDR: Pillow reads
    16-bit colour PNGs as 8-bit), and the colour statistics of a thumbnail."""
    from PIL import Image, UnidentifiedImageError

    info = ImageInfo()
    if data[:8] == _PNG_SIGNATURE and len(data) >= 26 and data[12:16] == b"IHDR":
        info.format = "PNG"
        info.width, info.height = struct.unpack(">II", data[16:24])
        info.bit_depth = data[24]
        info.channels = _PNG_CHANNELS.get(data[25], 0)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if info.format is None:
                info.format = image.format
                info.width, info.height = image.size
                info.channels = _MODE_CHANNELS.get(image.mode, len(image.getbands()))
                info.bit_depth = _MODE_BITS.get(image.mode, 8)
                if image.mode == "P" and "transparency" in image.info:
                    info.channels = 4
            elif image.mode == "P" and "transparency" in image.info:
                info.channels = 4
            if colour:
                image.draft("RGB", (_THUMBNAIL, _THUMBNAIL))  # JPEG: decode at a reduced scale
                rgb = image.convert("RGB")
                rgb.thumbnail((_THUMBNAIL, _THUMBNAIL))
                array = np.asarray(rgb, dtype=np.float32) / 255.0
                pixels = array.reshape(-1, 3)
                grey = array.mean(axis=2)
                roughness = (
                    (np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())
                    / 2
                    if min(grey.shape) > 1
                    else 0.0
                )
                info.colour = [
                    *pixels.mean(axis=0).tolist(),
                    *pixels.std(axis=0).tolist(),
                    float(roughness),
                ]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        info.error = f"the image cannot be read ({err})"
    return info


# --- the input contract ---------------------------------------------------------------------
def measure_accepted(
    images: Iterable[bytes],
    measured_on: str,
    margin: float = DEFAULT_MARGIN,
    any_size: bool = False,
) -> dict[str, Any]:
    """The input contract from the train split's encoded images (the card's
    ``input_contract.accepted``): size range, channels, bit depths, and the distribution of
    the per-image statistics (`COLOUR_STATS`): their mean, the inverse of their (slightly
    shrunk) covariance, and the largest accepted Mahalanobis distance, ``margin`` times the
    farthest train image's.

    ``any_size``: the model fits any image to its frame itself (the whole-mammogram
    model, whose train records are already fitted): ``width`` and ``height`` are None
    (no size limit) instead of the train images' range."""
    formats, channels, bits, widths, heights, stats = set(), set(), set(), [], [], []
    for data in images:
        info = inspect_image(data)
        if info.error:
            continue
        formats.add(info.format)
        channels.add(info.channels)
        bits.add(info.bit_depth)
        widths.append(info.width)
        heights.append(info.height)
        stats.append(info.colour)
    if len(stats) < 2:
        raise ValueError(
            f"{len(stats)} readable images in {measured_on}: too few to measure the input contract"
        )
    values = np.asarray(stats, dtype=np.float64)
    mean = values.mean(axis=0)
    covariance = np.cov(values.T)
    # Shrinkage: fewer images than statistics (a small ultrasound set) still give an inverse.
    covariance += (1e-2 * np.trace(covariance) / len(covariance) + 1e-6) * np.eye(len(covariance))
    precision = np.linalg.inv(covariance)
    distances = np.sqrt(np.einsum("nd,de,ne->n", values - mean, precision, values - mean))
    # Edge patches of a slide are cut short: half the smallest train side is still accepted.
    width = None if any_size else [max(1, int(min(widths)) // 2), int(max(widths))]
    height = None if any_size else [max(1, int(min(heights)) // 2), int(max(heights))]
    return {
        "formats": sorted(formats),
        "width": width,
        "height": height,
        "channels": sorted(int(c) for c in channels),
        "bit_depths": sorted(int(b) for b in bits),
        "colour": {
            "stats": list(COLOUR_STATS),
            "mean": mean.tolist(),
            "precision": precision.tolist(),
            "max_distance": float(margin * distances.max()),
            "margin": float(margin),
            "distance": "Mahalanobis distance of the image's statistics to the train split's",
        },
        "measured_on": measured_on,
        "n_images": int(len(values)),
    }


def _channels_text(channels: int) -> str:
    return {
        1: "grayscale",
        2: "grayscale with an alpha channel",
        3: "RGB",
        4: "RGBA (with an alpha channel)",
    }.get(channels, f"{channels} channels")


def contract_reason(
    accepted: dict[str, Any] | None, info: ImageInfo, check_size: bool = True
) -> str | None:
    """Why ``info`` is outside the contract, or None when it is inside (or no contract
    was measured). ``check_size=False`` for a tile of a larger image."""
    if info.error:
        return info.error
    if not accepted:
        return None
    if info.channels not in accepted["channels"]:
        seen = " or ".join(_channels_text(c) for c in accepted["channels"])
        return (
            f"the image is {_channels_text(info.channels)}; the model was trained on {seen} images"
        )
    if info.bit_depth not in accepted["bit_depths"]:
        seen = "/".join(str(b) for b in accepted["bit_depths"])
        return f"the image has {info.bit_depth}-bit samples; the model was trained on {seen}-bit images"
    if check_size and accepted.get("width") and accepted.get("height"):  # None: any size
        (w_lo, w_hi), (h_lo, h_hi) = accepted["width"], accepted["height"]
        if not (w_lo <= info.width <= w_hi and h_lo <= info.height <= h_hi):
            return (
                f"the image is {info.width}x{info.height} px; the model was trained on "
                f"{w_lo}-{w_hi} x {h_lo}-{h_hi} px images"
            )
    colour = accepted.get("colour")
    if colour and info.colour is not None:
        diff = np.asarray(info.colour) - np.asarray(colour["mean"])
        distance = float(np.sqrt(max(diff @ np.asarray(colour["precision"]) @ diff, 0.0)))
        if distance > colour["max_distance"]:
            return (
                f"its colours and texture are unlike the training images (distance {distance:.1f}; "
                f"the farthest accepted is {colour['max_distance']:.1f})"
            )
    return None


# --- calibration (the EvaluationReport component) -------------------------------------------
def conformal_rank(n: int, coverage: float) -> int:
    """The order statistic ``ceil((n + 1) * coverage)`` of split conformal prediction; above
    ``n`` the coverage cannot be guaranteed with ``n`` calibration examples."""
    return int(math.ceil((n + 1) * coverage - 1e-12))


def calibrate_conformal(
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    coverage: float = DEFAULT_COVERAGE,
    calibrated_on: str = "eval",
) -> dict[str, Any]:
    """Class-conditional (Mondrian) split conformal on score ``1 - p(true class)``.

    For each class c with n_c calibration images the threshold is the
    ``ceil((n_c + 1) * coverage)``-th smallest score of that class; class c joins an image's
    set when ``p_c >= 1 - threshold`` (the card's ``min_probability``). Then P(true class in
    set | class) >= coverage for exchangeable data. A class with too few images
    (n_c < coverage / (1 - coverage), 19 at 95 %) makes the coverage unclaimable: the result
    says so (``claimed`` False, ``reason``).

    Args:
        labels: [n] int class indices; probabilities: [n, k] rows summing to 1.
    """
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    min_probability: dict[str, float | None] = {}
    n_per_class: dict[str, int] = {}
    short = []
    for c, name in enumerate(class_names):
        scores = np.sort(1.0 - probabilities[labels == c, c])
        n_per_class[name] = int(len(scores))
        k = conformal_rank(len(scores), coverage)
        if k > len(scores):
            min_probability[name] = None
            short.append(
                f"{name}: {len(scores)} images, needs at least {conformal_rank_min(coverage)}"
            )
        else:
            min_probability[name] = float(1.0 - scores[k - 1])
    reason = None
    if short:
        reason = (
            f"the {calibrated_on} split is too small to claim {coverage:.0%} coverage ("
            + "; ".join(short)
            + ")"
        )
    return {
        "coverage": float(coverage),
        "claimed": not short,
        "reason": reason,
        "calibrated_on": calibrated_on,
        "score": "1 - p(class), class-conditional split conformal",
        "n_per_class": n_per_class,
        "min_probability": min_probability,
    }


def conformal_rank_min(coverage: float) -> int:
    """The fewest calibration images of a class for which ``coverage`` can be claimed."""
    n = 1
    while conformal_rank(n, coverage) > n:
        n += 1
    return n


def prediction_sets(
    conformal: dict[str, Any], class_names: Sequence[str], probabilities: np.ndarray
) -> list[list[str]]:
    """The conformal set of each row of ``probabilities`` [n, k]."""
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    limits = [conformal["min_probability"].get(name) for name in class_names]
    return [
        [name for name, p, limit in zip(class_names, row, limits) if limit is None or p >= limit]
        for row in probabilities
    ]


def ood_threshold(scores: np.ndarray, false_alarm_rate: float = DEFAULT_FALSE_ALARM) -> float:
    """The OOD score threshold that flags at most ``false_alarm_rate`` of exchangeable
    in-distribution images (the ``ceil((n + 1)(1 - rate))``-th smallest eval score; the
    largest when the split is too small for the rate)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    k = min(conformal_rank(len(scores), 1.0 - false_alarm_rate), len(scores))
    return float(scores[k - 1])


# --- the decision ----------------------------------------------------------------------------
def decide(
    rule: dict[str, Any] | None,
    probabilities: Sequence[float],
    ood_score: float | None = None,
    contract: str | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The answer for one image under the card's ``decision_rule``.

    Args:
        rule: the card's ``decision_rule`` (None: a card without one; the arg-max is
            returned and ``rule`` says "none").
        probabilities: the model's [k] class probabilities.
        ood_score: the model's ``ood_score`` output (None if the model has none).
        contract: `contract_reason`'s answer for the image (None: inside the contract).
        class_names: the names without a rule (the card's ``class_names``).

    Returns:
        {"status": assessed | uncertain | not_assessed, "class_name": the answer or None,
        "prediction_set": [...], "text": what a person reads, "reason", "rule", "ood_score"}.
    """
    probabilities = [float(p) for p in probabilities]
    base = {"ood_score": None if ood_score is None else float(ood_score), "reason": None}
    if contract:
        return {
            **base,
            "status": STATUS_NOT_ASSESSED,
            "class_name": None,
            "prediction_set": [],
            "text": f"not assessed: {contract}",
            "reason": contract,
            "rule": "input contract",
        }
    if rule is None:
        names = list(class_names or [str(i) for i in range(len(probabilities))])
        index = int(np.argmax(probabilities))
        return {
            **base,
            "status": STATUS_ASSESSED,
            "class_name": names[index],
            "prediction_set": [names[index]],
            "text": names[index],
            "rule": "none (the model card has no decision rule): arg-max",
        }
    names = list(rule["class_names"])
    ood = rule.get("ood") or {}
    threshold = ood.get("threshold")
    if ood_score is not None and threshold is not None and float(ood_score) > float(threshold):
        reason = (
            f"the image is unlike the training images (OOD score {float(ood_score):.1f} > threshold "
            f"{float(threshold):.1f}, set for {ood['false_alarm_rate']:.0%} false alarms)"
        )
        return {
            **base,
            "status": STATUS_NOT_ASSESSED,
            "class_name": None,
            "prediction_set": [],
            "text": f"not assessed: {reason}",
            "reason": reason,
            "rule": "OOD threshold",
        }
    if rule["kind"] == "conformal":
        members = prediction_sets(rule["conformal"], names, np.asarray([probabilities]))[0]
        described = f"conformal prediction set at {rule['conformal']['coverage']:.0%} coverage"
        if len(members) == 1:
            return {
                **base,
                "status": STATUS_ASSESSED,
                "class_name": members[0],
                "prediction_set": members,
                "text": members[0],
                "rule": described,
            }
        return {
            **base,
            "status": STATUS_UNCERTAIN,
            "class_name": None,
            "prediction_set": members,
            "text": UNCERTAIN_TEXT,
            "rule": described,
            "reason": ("several classes are plausible" if members else "no class is plausible"),
        }
    if len(names) == 2 and rule.get("operating_threshold") is not None:
        positive = names.index(rule["positive_class"])
        called = (
            positive
            if probabilities[positive] >= float(rule["operating_threshold"])
            else 1 - positive
        )
        described = f"operating threshold {float(rule['operating_threshold']):.4g} on P({rule['positive_class']})"
    else:
        called = int(np.argmax(probabilities))
        described = "arg-max"
    return {
        **base,
        "status": STATUS_ASSESSED,
        "class_name": names[called],
        "prediction_set": [names[called]],
        "text": names[called],
        "rule": described,
    }


def assess(
    card: dict[str, Any],
    data: bytes,
    probabilities: Sequence[float],
    ood_score: float | None = None,
    check_size: bool = True,
) -> dict[str, Any]:
    """`decide` for one encoded image under ``card``: the contract check included."""
    accepted = (card.get("input_contract") or {}).get("accepted") if card else None
    info = inspect_image(data, colour=bool(accepted))
    return decide(
        (card or {}).get("decision_rule"),
        probabilities,
        ood_score,
        contract_reason(accepted, info, check_size),
        (card or {}).get("class_names"),
    )
