"""The decision rule's parts, recomputed by hand: image inspection, the input contract,
class-conditional split conformal sets and their coverage, the OOD threshold, `decide`."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from breastdx_core import decision


def _png(array, mode=None, **save):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _he_patch(rng, size=50):
    """A pink/purple H&E-like patch (like pipeline/synthetic.py's colours)."""
    base = np.array([220, 150, 200], dtype=float) + rng.normal(0, 8, 3)
    image = base + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _png16(width=50, height=50, channels=3, seed=0):
    """A 16-bit PNG written by hand (Pillow writes 16-bit only for grey)."""
    import struct
    import zlib

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 65535, (height, width, channels), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    colour_type = {1: 0, 3: 2, 4: 6}[channels]

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def accepted():
    rng = np.random.default_rng(0)
    return decision.measure_accepted(
        (_png(_he_patch(rng)) for _ in range(200)), measured_on="train split"
    )


def test_inspect_reads_the_header_not_pillows_conversion():
    info = decision.inspect_image(_png16())
    assert (info.format, info.width, info.height, info.channels, info.bit_depth) == (
        "PNG",
        50,
        50,
        3,
        16,
    )
    rgba = decision.inspect_image(_png(np.zeros((8, 9, 4), np.uint8)))
    assert (rgba.width, rgba.height, rgba.channels, rgba.bit_depth) == (9, 8, 4, 8)
    grey = decision.inspect_image(_png(np.zeros((8, 8), np.uint8)))
    assert grey.channels == 1
    jpeg = io.BytesIO()
    Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).save(jpeg, format="JPEG")
    info = decision.inspect_image(jpeg.getvalue())
    assert (info.format, info.channels, info.bit_depth) == ("JPEG", 3, 8)
    assert info.colour[0] == pytest.approx(200 / 255, abs=0.02) and info.colour[3] < 0.02
    assert decision.inspect_image(b"not an image").error


def test_contract_passes_held_out_patches_and_flags_the_four_kinds(accepted):
    assert accepted["channels"] == [3] and accepted["bit_depths"] == [8]
    assert (
        accepted["width"] == [25, 50] and accepted["n_images"] == 200
    )  # edge patches: half the side accepted
    rng = np.random.default_rng(1)  # held out: another seed
    held_out = [
        decision.contract_reason(accepted, decision.inspect_image(_png(_he_patch(rng))))
        for _ in range(50)
    ]
    assert held_out == [None] * 50
    grey = decision.contract_reason(accepted, decision.inspect_image(_png(_he_patch(rng)[..., 0])))
    assert "grayscale" in grey
    alpha = decision.contract_reason(
        accepted,
        decision.inspect_image(_png(np.dstack([_he_patch(rng), np.full((50, 50), 255, np.uint8)]))),
    )
    assert "alpha" in alpha
    assert "16-bit" in decision.contract_reason(accepted, decision.inspect_image(_png16()))
    noise = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    assert "colours and texture are unlike" in decision.contract_reason(
        accepted, decision.inspect_image(_png(noise))
    )
    smooth = np.full((50, 50, 3), (220, 150, 200), np.uint8)  # the right colour, no texture at all
    assert "texture" in decision.contract_reason(accepted, decision.inspect_image(_png(smooth)))
    big = decision.contract_reason(
        accepted, decision.inspect_image(_png(np.tile(_he_patch(rng), (4, 4, 1))))
    )
    assert "200x200 px" in big
    assert (
        decision.contract_reason(
            accepted,
            decision.inspect_image(_png(np.tile(_he_patch(rng), (4, 4, 1)))),
            check_size=False,
        )
        is None
    )


def test_conformal_threshold_is_the_order_statistic():
    # class 0: scores 1 - p0 = 0.0, 0.05, ..., 0.95 (20 images); at 90 %: ceil(21 * 0.9) = 19th smallest = 0.90
    p0 = 1 - np.arange(20) * 0.05
    probabilities = np.stack([p0, 1 - p0], axis=1)
    labels = np.zeros(20, int)
    probabilities = np.concatenate([probabilities, probabilities[:, ::-1]])
    labels = np.concatenate([labels, np.ones(20, int)])
    result = decision.calibrate_conformal(labels, probabilities, ["a", "b"], coverage=0.9)
    assert result["claimed"] and result["n_per_class"] == {"a": 20, "b": 20}
    assert result["min_probability"]["a"] == pytest.approx(1 - 0.90)
    sets = decision.prediction_sets(
        result, ["a", "b"], np.array([[0.95, 0.05], [0.5, 0.5], [0.05, 0.95]])
    )
    assert sets == [["a"], ["a", "b"], ["b"]]


def test_conformal_refuses_a_too_small_split():
    assert decision.conformal_rank_min(0.95) == 19 and decision.conformal_rank_min(0.9) == 9
    labels = np.array([0] * 30 + [1] * 10)
    probabilities = np.tile([0.7, 0.3], (40, 1))
    result = decision.calibrate_conformal(labels, probabilities, ["neg", "pos"], coverage=0.95)
    assert not result["claimed"] and "pos: 10 images, needs at least 19" in result["reason"]
    assert result["min_probability"]["pos"] is None  # never excluded: no claim is made for it


def test_conformal_coverage_holds_on_exchangeable_data():
    rng = np.random.default_rng(3)
    covered = []
    for _trial in range(200):
        labels = rng.integers(0, 2, 400)
        p1 = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
        probabilities = np.stack([1 - p1, p1], axis=1)
        rule = decision.calibrate_conformal(
            labels[:200], probabilities[:200], ["a", "b"], coverage=0.9
        )
        sets = decision.prediction_sets(rule, ["a", "b"], probabilities[200:])
        covered.append(np.mean([["a", "b"][y] in s for y, s in zip(labels[200:], sets)]))
    assert (
        np.mean(covered) >= 0.89
    )  # marginal guarantee (>= 0.9 in expectation), with Monte Carlo slack


def test_ood_threshold_and_false_alarms():
    scores = np.arange(1, 101, dtype=float)  # 100 eval images
    assert decision.ood_threshold(scores, 0.05) == 96.0  # ceil(101 * 0.95) = 96th
    assert decision.ood_threshold(scores[:10], 0.01) == 10.0  # too few for 1 %: the largest


def _rule(kind="conformal"):
    return {
        "kind": kind,
        "description": "",
        "class_names": ["neg", "pos"],
        "positive_class": "pos",
        "operating_threshold": 0.9,
        "conformal": {
            "coverage": 0.95,
            "claimed": kind == "conformal",
            "calibrated_on": "eval",
            "n_per_class": {"neg": 40, "pos": 40},
            "min_probability": {"neg": 0.2, "pos": 0.3},
        },
        "ood": {"output": "ood_score", "threshold": 10.0, "false_alarm_rate": 0.01},
    }


def test_decide_one_rule():
    rule = _rule()
    assert decision.decide(rule, [0.9, 0.1], 3.0)["class_name"] == "neg"
    both = decision.decide(rule, [0.6, 0.4], 3.0)
    assert (
        both["status"] == "uncertain"
        and both["class_name"] is None
        and both["prediction_set"] == ["neg", "pos"]
    )
    assert both["text"] == "uncertain: refer to a pathologist"
    far = decision.decide(rule, [0.99, 0.01], 25.0)
    assert (
        far["status"] == "not_assessed"
        and far["class_name"] is None
        and far["text"].startswith("not assessed:")
    )
    refused = decision.decide(rule, [0.9, 0.1], 3.0, contract="the image is grayscale")
    assert refused["text"] == "not assessed: the image is grayscale"
    threshold = _rule("threshold")
    assert (
        decision.decide(threshold, [0.2, 0.8], 1.0)["class_name"] == "neg"
    )  # 0.8 < 0.9: not positive
    assert decision.decide(threshold, [0.05, 0.95], 1.0)["class_name"] == "pos"
    assert math.isclose(decision.decide(rule, [0.9, 0.1], 3.0)["ood_score"], 3.0)
