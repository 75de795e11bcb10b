"""Tiling benchmark: the probability map of a 2,000 x 2,000 H&E image, tiles/s and wall time.

Run by hand (``python bench/tiling.py --serving-root DIR``), not by the tests. It starts
the real model server (``python -m serving``) on a free loopback port, builds a
2,000 x 2,000 image from the synthetic generator's H&E patches (a round section on
glass, so the tissue mask has background to skip), then times, ``--repeats`` times:

* the web app's whole path through ``POST /api/map`` of the real web app (``python -m
  webapp``): upload, checks, tissue mask, crops, batched ``:predict`` calls, the PNG map;
* its parts in this process (``webapp.tiling``): mask + crops + PNG encoding, the
  ``:predict`` calls, the picture;
* the model alone: the same tiles in one in-process ``serving_default`` call, the floor
  for any tiling design on this machine (an in-model tiling signature cannot beat it).

Goal: the whole map in <= 5 s on 2 cores. The load generator, both servers and
the model share the machine's cores.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import model_and_web_servers, newest_version  # noqa: E402  (bench/serve.py)

SIDE = 2000
GLASS = 242
DEFAULT_MODEL = "breastdx-idc"


def section_image(side: int = SIDE, seed: int = 3) -> bytes:
    """A round tissue section (synthetic H&E patches, a positive focus) on glass; PNG bytes."""
    from pipeline import synthetic

    rng = np.random.default_rng(seed)
    patch = synthetic.PATCH
    pixels = np.full((side, side, 3), GLASS, np.uint8)
    centre, radius = side / 2, side * 0.45
    for y in range(0, side, patch):
        for x in range(0, side, patch):
            distance = np.hypot(y + patch / 2 - centre, x + patch / 2 - centre)
            if distance > radius:
                continue
            positive = np.hypot(y - side * 0.35, x - side * 0.6) < side * 0.12
            pixels[y : y + patch, x : x + patch] = synthetic.render_patch(rng, positive)[
                : side - y, : side - x
            ]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def in_process_parts(image: bytes, model_url: str, model: str, stride: int) -> dict[str, float]:
    from breastdx_core import contract
    from webapp import tiling
    from webapp.clients import RestClient

    client = RestClient(model_url, model, timeout_s=600)
    version = client.newest_version()
    patch = contract.IDC_PATCH[0]
    settings = tiling.TileSettings(patch=patch, stride=stride)
    started = time.perf_counter()
    rgb = tiling.decode_rgb(image)
    tiles, _, _ = tiling.plan(rgb, settings)
    sent = [t for t in tiles if t.status == tiling.STATUS_TISSUE]
    crops = [tiling.encode_tile(rgb[t.y : t.y + patch, t.x : t.x + patch]) for t in sent]
    prepared = time.perf_counter()
    tiling.classify_tiles(
        lambda batch: client.predict(batch, version=version, explain=False), crops, settings
    )
    classified = time.perf_counter()
    tile_map = tiling.map_image(
        image, lambda batch: client.predict(batch, version=version, explain=False), settings
    )
    render_start = time.perf_counter()
    tiling.render_map(image, tile_map, contract.RESEARCH_ONLY)
    done = time.perf_counter()
    return {
        "tiles": len(tiles),
        "sent": len(sent),
        "prepare_s": prepared - started,
        "predict_s": classified - prepared,
        "render_s": done - render_start,
        "crops": crops,
    }


def model_floor(path: str, crops: list[bytes]) -> float:
    import tensorflow as tf

    from breastdx_core import contract

    function = tf.saved_model.load(path).signatures[contract.SIGNATURE_BYTES]
    function(**{contract.SERVING_INPUT_BYTES: tf.constant(crops[:8])})  # trace and warm up
    started = time.perf_counter()
    function(**{contract.SERVING_INPUT_BYTES: tf.constant(crops)})
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--serving-root", required=True)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--stride", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    path = newest_version(args.serving_root, args.model)
    image = section_image()
    print(
        f"model {args.model} at {path}; {SIDE}x{SIDE} image, {len(image)} bytes; stride {args.stride}; "
        f"{os.cpu_count()} CPU cores"
    )

    with model_and_web_servers(
        args.serving_root, args.model, web_env={"BREASTDX_WEB_REQUEST_TIMEOUT_S": "600"}
    ) as (model_url, web_url):
        walls, body = [], {}
        for repeat in range(args.repeats + 1):  # the first call warms both servers up
            started = time.perf_counter()
            response = requests.post(
                f"{web_url}/api/map",
                files={"file": ("section.png", image, "image/png")},
                data={"stride": str(args.stride), "picture": "1"},
                timeout=600,
            )
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"/api/map answered {response.status_code}: {response.text[:300]}")
            body = response.json()
            if repeat:
                walls.append(elapsed)
        parts = in_process_parts(image, model_url, args.model, args.stride)
    floor = model_floor(path, parts["crops"])
    counts = body["counts"]
    wall = statistics.median(walls)
    print(
        f"tiles {counts['tiles']} ({body['rows']}x{body['cols']}), background {counts['background']}, "
        f"sent {counts['tiles'] - counts['background']}: assessed {counts['assessed']}, uncertain "
        f"{counts['uncertain']}, not assessed {counts['flagged']}; positive {counts['positive']}"
    )
    print(
        f"web POST /api/map, whole map: median {wall:.2f} s over {len(walls)} runs "
        f"(min {min(walls):.2f}, max {max(walls):.2f}); {(counts['tiles'] - counts['background']) / wall:.0f} tiles/s"
    )
    print(
        f"  parts in-process: mask + crops + PNG {parts['prepare_s']:.2f} s, :predict batches "
        f"{parts['predict_s']:.2f} s ({parts['sent'] / parts['predict_s']:.0f} tiles/s), picture "
        f"{parts['render_s']:.2f} s"
    )
    print(
        f"  model alone, one in-process call of all {parts['sent']} tiles: {floor:.2f} s "
        f"({parts['sent'] / floor:.0f} tiles/s)"
    )
    print(f"goal <= 5 s: {'met' if wall <= 5.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
