"""Whole-slide benchmark: a 100,000 x 80,000 px slide at 40x mapped through the model server,
its memory against the slide's size, and the viewer's DeepZoom tile requests.

    python bench/slide.py --untrained-default            # the demo's default architecture, untrained
    python bench/slide.py --real-data-default            # a real-data run's default (Lite0 @128)
    python bench/slide.py --serving-root DIR --model M   # a pushed model (e.g. `make demo`'s)
    python bench/slide.py real --patient DIR --out X.svs # a real IDC patient as a 40x slide

Run by hand, not by the tests (figures in docs/results/slides.md). The slide is synthetic
tissue (pipeline/synthetic_slide.py: blobs of synthetic IDC patches at 2.5x, enlarged 16x to a
0.25 um/px level 0, pyramid by 4) written once with tifffile as an Aperio SVS; the IDC model
reads it at 4 um/px (2.5x). With ``--untrained-default`` the model is the default IDC
architecture (breastdx_core/configs.py: VGG16 at 64x64) with random weights behind the
project's own decode (components/transform: pad/crop to 50, resize to 64): the same compute as
a trained one, answers without meaning (no decision rule in its card: a 0.5 threshold).

It starts the real model server and the web app (bench/serve.py), then: the whole map by
``POST /api/slides/<name>/map`` (wall time; the mask/tile split), the web process's peak
memory (psutil, polled), the CPU seconds both servers spent on it (over 2: the wall time two
dedicated cores would need at best), the same map in a separate process at two slide sizes
with a constant stand-in model (peak RSS: flat in the slide's size?), and
``--tile-requests`` DeepZoom tile requests at random places and levels (p50/p99, one
client). The machine's cores are shared by the servers, the client and whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import model_and_web_servers, newest_version, percentile  # noqa: E402  (bench/serve.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLIDE_WIDTH, SLIDE_HEIGHT = 100_000, 80_000  # level 0 at 0.25 um/px (40x)
SLIDE_MPP = 0.25
MODEL_NAME = "breastdx-idc"
GOAL_S = 60.0
TILE_REQUESTS = 400
SMALL_FACTOR = 4  # the memory check's smaller slide: 1/4 of each side


def write_bench_slide(path: str, width: int, height: int, seed: int = 3) -> dict[str, object]:
    from pipeline import synthetic_slide

    scale = int(round(synthetic_slide.PATCH_MPP / SLIDE_MPP))
    rgb, labels = synthetic_slide.synthetic_tissue(width // scale, height // scale, seed=seed)
    started = time.perf_counter()
    written = synthetic_slide.write_slide(path, rgb, synthetic_slide.PATCH_MPP, SLIDE_MPP)
    written["seconds"] = time.perf_counter() - started
    written["tissue_tiles"] = int((labels >= 0).sum())
    written["bytes"] = os.path.getsize(path)
    return written


def untrained_default_model(serving_root: str, real_data: bool = False) -> str:
    """The default IDC classifier (configs' backbone and size, random weights) with the
    project's decode, saved with a schema-valid card as ``<root>/<MODEL_NAME>/1``.

    ``real_data``: the default of a run on real data (``--data-root``), which differs from the
    synthetic demo's (breastdx_core/configs.py, REAL_DATA_TASK_DEFAULTS)."""
    import tensorflow as tf

    from breastdx_core import configs, contract, model_card
    from components.trainer import trainer_module
    from components.trainer.sections import TrainerSettings
    from components.transform.transform_module import decode_image

    # configs.load applies the real-data defaults where a data root is named; it is not read.
    loaded = configs.load(env={}, data_root="/real-data") if real_data else configs.load(env={})
    settings = TrainerSettings.of(loaded).with_training(weights=None)
    task = contract.get_task("idc")
    model = trainer_module.build_model(settings)
    size, native = list(settings.task.model_size), list(task.image.native_size)

    class Default(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.class_names = tf.constant(list(task.class_names))

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT_BYTES)]
        )
        def serve(self, image_bytes):
            images = tf.map_fn(
                lambda one: decode_image(one, size, native),
                image_bytes,
                fn_output_signature=tf.TensorSpec(size + [contract.MODEL_CHANNELS], tf.float32),
            )
            probabilities = self.model(images, training=False)
            index = tf.argmax(probabilities, axis=-1)
            return {
                contract.OUTPUT_PROBABILITIES: probabilities,
                contract.OUTPUT_CLASS_NAME: tf.gather(self.class_names, index),
                contract.OUTPUT_CLASS_INDEX: index,
                contract.OUTPUT_POSITIVE: probabilities[:, task.positive_index],
            }

    path = os.path.join(serving_root, MODEL_NAME, "1")
    module = Default()
    tf.saved_model.save(module, path, signatures={contract.SIGNATURE_BYTES: module.serve})
    card = model_card.trainer_fields(
        config={
            **settings.task.to_dict(),
            "task": "idc",
            "positive_index": task.positive_index,
            "class_names": list(task.class_names),
        },
        signature=contract.SIGNATURE_BYTES,
        input_description="PNG bytes",
        outputs={},
        parameters={"total": int(model.count_params())},
        history={},
        seconds=0.0,
        intended_use="Benchmark only: untrained weights.",
        backbone=settings.training.backbone,
    )
    card.update(model_card.publish_fields(MODEL_NAME, 1, None, path))
    model_card.validate(card)
    os.makedirs(os.path.join(path, os.path.dirname(contract.MODEL_CARD_RELPATH)), exist_ok=True)
    with open(os.path.join(path, contract.MODEL_CARD_RELPATH), "w", encoding="utf-8") as handle:
        handle.write(model_card.dumps(card))
    return path


def peak_rss_of(pid: int, stop: threading.Event, out: list[int]) -> None:
    import psutil

    process = psutil.Process(pid)
    peak = 0
    while not stop.is_set():
        try:
            rss = process.memory_info().rss + sum(
                c.memory_info().rss for c in process.children(recursive=True)
            )
        except psutil.Error:
            break
        peak = max(peak, rss)
        time.sleep(0.05)
    out.append(peak)


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a process and its children (gunicorn's workers)."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        times = one.cpu_times()
        total += times.user + times.system
    return total


def memory_run(path: str) -> dict[str, float]:
    """In this process: the map of ``path`` with a constant stand-in model; peak RSS."""
    import types

    from webapp import slides

    answer = types.SimpleNamespace(
        positive_probability=0.1,
        probabilities=[0.9, 0.1],
        class_name="IDC-negative",
        model_version="0",
        ood_score=None,
        decision=None,
    )
    slide, info = slides.open_slide(path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = slides.map_slide(
        slide, info, lambda batch: [answer] * len(batch), patch=50, target_mpp=4.0
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "width": info.width,
        "height": info.height,
        "tiles": result.rows * result.cols,
        "tissue": result.counts()["assessed"],
        "peak_mib": peak / 1024,
        "before_mib": before / 1024,
        **{f"{k}_s": round(v, 2) for k, v in result.timings.items()},
    }


def tile_latencies(web_url: str, name: str, count: int, seed: int = 5) -> list[float]:
    """``count`` DeepZoom tile requests at random places of random levels (the top 5 levels,
    where a person looks), one after another."""
    import xml.etree.ElementTree as ElementTree

    dzi = requests.get(f"{web_url}/slide-tiles/{name}.dzi", timeout=60)
    dzi.raise_for_status()
    root = ElementTree.fromstring(dzi.text)
    size = root.find("{*}Size")
    width, height = int(size.get("Width")), int(size.get("Height"))
    tile = int(root.get("TileSize"))
    top = int.bit_length(max(width, height) - 1)  # DeepZoom: level n has the full size
    rng = random.Random(seed)
    session = requests.Session()
    latencies = []
    for _ in range(count):
        level = rng.randint(top - 4, top)
        scale = 2 ** (top - level)
        cols, rows = -(-width // scale // tile), -(-height // scale // tile)
        col, row = rng.randrange(max(1, cols)), rng.randrange(max(1, rows))
        started = time.perf_counter()
        response = session.get(
            f"{web_url}/slide-tiles/{name}_files/{level}/{col}_{row}.jpeg", timeout=60
        )
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(
                f"tile {level}/{col}_{row}: {response.status_code} {response.text[:200]}"
            )
    return latencies


def real_slide(args: argparse.Namespace) -> int:
    from pipeline import synthetic_slide

    written = synthetic_slide.patient_slide(args.out, args.patient, args.mpp)
    print(
        f"{args.out}: {written['patches']} real patches of {args.patient} at their x/y; "
        f"{written['width']} x {written['height']} px at {args.mpp} um/px; "
        f"levels {written['levels']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["real"]:
        parser = argparse.ArgumentParser(description="a real IDC patient's patches as a slide")
        parser.add_argument("--patient", required=True, help="a patient folder of IDC patches")
        parser.add_argument("--out", required=True, help="the slide to write (.svs or .tif)")
        parser.add_argument(
            "--mpp", type=float, default=SLIDE_MPP, help="level-0 microns per pixel"
        )
        return real_slide(parser.parse_args(argv[1:]))
    if argv[:1] == ["memory"]:
        print(json.dumps(memory_run(argv[1])))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--serving-root", help="a serving root with a pushed IDC model")
    model.add_argument(
        "--untrained-default",
        action="store_true",
        help="build the default architecture with random weights (same compute)",
    )
    model.add_argument(
        "--real-data-default",
        action="store_true",
        help="the same with the architecture a run on real data trains (not the demo's)",
    )
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--workdir", default=os.path.join(ROOT, "workdir", "bench-slide"))
    parser.add_argument("--width", type=int, default=SLIDE_WIDTH)
    parser.add_argument("--height", type=int, default=SLIDE_HEIGHT)
    parser.add_argument("--tile-requests", type=int, default=TILE_REQUESTS)
    parser.add_argument(
        "--skip-memory", action="store_true", help="leave out the two-size memory check"
    )
    args = parser.parse_args(argv)

    slides_dir = os.path.join(args.workdir, "slides")
    os.makedirs(slides_dir, exist_ok=True)
    name = f"bench-{args.width}x{args.height}.svs"
    path = os.path.join(slides_dir, name)
    if not os.path.exists(path):
        written = write_bench_slide(path, args.width, args.height)
        print(
            f"wrote {path}: {written['width']} x {written['height']} px, "
            f"{written['bytes'] / 2**30:.2f} GiB, "
            f"levels {written['levels']}, {written['tissue_tiles']} tissue tiles at 2.5x, "
            f"{written['seconds']:.0f} s"
        )
    serving_root = args.serving_root
    if args.untrained_default or args.real_data_default:
        kind = "serving-real-data" if args.real_data_default else "serving"
        serving_root = os.path.join(args.workdir, kind)
        if not os.path.exists(os.path.join(serving_root, MODEL_NAME, "1", "saved_model.pb")):
            untrained_default_model(serving_root, real_data=args.real_data_default)
        args.model = MODEL_NAME
    version = newest_version(serving_root, args.model)
    print(f"model {args.model} at {version}; {os.cpu_count()} CPU cores (shared)")

    small_name = f"bench-{args.width // SMALL_FACTOR}x{args.height // SMALL_FACTOR}.svs"
    small = os.path.join(slides_dir, small_name)
    if not os.path.exists(small):
        write_bench_slide(small, args.width // SMALL_FACTOR, args.height // SMALL_FACTOR)
    processes: list = []
    web_env = {"BREASTDX_WEB_SLIDES_DIR": slides_dir, "BREASTDX_WEB_REQUEST_TIMEOUT_S": "600"}
    with model_and_web_servers(serving_root, args.model, web_env=web_env, processes=processes) as (
        _,
        web_url,
    ):
        # The small slide warms both servers up (model loaded, graphs traced, pools open).
        requests.post(f"{web_url}/api/slides/{small_name}/map", timeout=3600).raise_for_status()
        cpu_before = [cpu_seconds_of(p.pid) for p in processes]
        stop, peaks = threading.Event(), []
        watcher = threading.Thread(
            target=peak_rss_of, args=(processes[1].pid, stop, peaks), daemon=True
        )
        watcher.start()
        started = time.perf_counter()
        response = requests.post(f"{web_url}/api/slides/{name}/map", timeout=3600)
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
        cpu = [
            after - before
            for after, before in zip([cpu_seconds_of(p.pid) for p in processes], cpu_before)
        ]
        if response.status_code != 200:
            raise SystemExit(f"map answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        latencies = tile_latencies(web_url, name, args.tile_requests)
    counts, seconds = body["counts"], body["seconds"]
    sent = counts["tiles"] - counts["background"]
    print(
        f"level {body['level']['level']} at {body['level']['level_mpp']} um/px (target "
        f"{body['level']['target_mpp']}), resample {body['level']['resample']}; "
        f"grid {body['rows']} x {body['cols']} = {counts['tiles']} tiles, tissue {sent}, "
        f"background {counts['background']}"
    )
    print(
        f"whole map (POST /api/slides/.../map): {wall:.1f} s wall; in the app: "
        f"mask {seconds['mask']:.2f} s, tiles {seconds['tiles']:.1f} s "
        f"(of which reading+encoding {seconds['read_tiles']:.1f} s); "
        f"{sent / seconds['tiles']:.0f} tiles/s"
    )
    print(
        f"CPU seconds during the map: model server {cpu[0]:.1f}, web app {cpu[1]:.1f}; on two "
        f"dedicated cores at best {sum(cpu) / 2:.1f} s ({sent / (sum(cpu) / 2):.0f} tiles/s)"
    )
    print(f"web process peak RSS during the map: {peaks[0] / 2**20:.0f} MiB")
    print(
        f"viewer tile requests ({len(latencies)}, one client): "
        f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.1f} ms, "
        f"mean {statistics.mean(latencies) * 1000:.1f} ms"
    )
    print(f"goal whole map <= {GOAL_S:.0f} s: {'met' if wall <= GOAL_S else 'NOT met'}")
    if not args.skip_memory:
        for target in (small, path):
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "memory", target],
                check=True,
                capture_output=True,
                text=True,
                env=dict(os.environ, PYTHONPATH=ROOT),
            ).stdout
            run = json.loads(out.strip().splitlines()[-1])
            print(
                f"memory, stand-in model: {run['width']} x {run['height']} px, "
                f"{run['tiles']} tiles ({run['tissue']} tissue): "
                f"peak RSS {run['peak_mib']:.0f} MiB (after imports and open "
                f"{run['before_mib']:.0f}); mask {run['mask_s']} s, tiles {run['tiles_s']} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
