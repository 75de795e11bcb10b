"""How the data stages' cost grows with the number of images.

    python bench/scale.py --images 1000 3000 [--workdir /tmp/x] [--train-steps 8]
    python bench/scale.py --plot-only --results /tmp/x/results.json   # table + plot again

For each size N it writes a synthetic IDC tree with the real set's shape (Kaggle IDC:
277,524 patches in 279 patient folders, so ~995 patches per patient; 28 % positive;
50x50 patches with smaller edge patches; pipeline/synthetic.py's generator, ~5 KiB
PNGs against the real set's ~5.8 KiB), then runs the real pipeline's data stages
(`pipeline.pipeline._data_stages`, which create_pipeline wires; LocalDagRunner, the default Beam settings):
ImageExampleGen (ingest + report) -> StatisticsGen -> ImportSchemaGen -> ExampleValidator
-> AnomalyGate -> Transform, and with ``--train-steps K`` the Trainer for K steps.

The run is one child process, as `breastdx run` is; this process samples the resident
set size of the child and its descendants every ``SAMPLE_S`` and attributes each sample
to the component running then (LocalDagRunner's "Component X is running/finished" log
lines, timestamped in the child). Per component it records the wall time, the peak RSS
of the run while that component ran (memory the process held from earlier components
included: Python seldom returns it), the RSS the component added over what the process
held when it started, and the size of its output folder. Results accumulate in a JSON
file across invocations; the table, a log-log plot (PNG) and the growth exponent per
stage (least squares on log time against log N) are written from all sizes in it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

REAL_IMAGES = 277_524
REAL_PATIENTS = 279
REAL_POSITIVE = 78_786
MIN_PATIENTS = 10  # fewer patients than this leave a hash-bucket split empty
SAMPLE_S = 0.2
MIB = 1024.0 * 1024.0
DATA_STAGES = (
    "ImageExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "AnomalyGate",
    "Transform",
)
TRAIN_STAGES = ("Trainer",)
DEFAULT_WORKDIR = "/tmp/bench13-scale"
DEFAULT_PLOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "scale.png"
)


# --- pure helpers (tests/test_bench_scale.py) -----------------------------------------


def scaled_shape(images: int) -> tuple[int, int]:
    """(patients, mean patches per patient) of an N-image set shaped like the real one:
    the real set's patches per patient (277,524 / 279), at least MIN_PATIENTS patients."""
    patients = max(MIN_PATIENTS, int(round(images * REAL_PATIENTS / REAL_IMAGES)))
    return patients, max(1, int(round(images / patients)))


def growth_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """The exponent b of values ~ a * sizes**b: least squares on the logs.

    Raises:
        ValueError: fewer than two distinct sizes, or a size or value not > 0.
    """
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values)]
    if any(not (s > 0 and v > 0) for s, v in zip(sizes, values)):
        raise ValueError("sizes and values must be > 0")
    if len({x for x, _ in points}) < 2:
        raise ValueError("need at least two distinct sizes")
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def extrapolate(sizes: Sequence[float], values: Sequence[float], target: float) -> float:
    """The power law through the two largest sizes, evaluated at ``target`` (the local
    exponent: fixed costs flatten the small sizes' part of the curve)."""
    (s1, v1), (s2, v2) = sorted(zip(sizes, values))[-2:]
    b = growth_exponent([s1, s2], [v1, v2])
    return v2 * (target / s2) ** b


def stage_windows(events: Sequence[tuple[float, str, str]]) -> dict[str, tuple[float, float]]:
    """{component: (start, end)} from (time, component, "running"|"finished") events."""
    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for t, node, what in sorted(events):
        if what == "running":
            starts[node] = t
        elif what == "finished" and node in starts:
            windows[node] = (starts[node], t)
    return windows


def attribute(
    samples: Sequence[tuple[float, float]], windows: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """Per window: the peak of the (time, rss) samples inside it and its rise over the
    last sample before it (the RSS the component added)."""
    out = {}
    ordered = sorted(samples)
    for node, (start, end) in windows.items():
        inside = [rss for t, rss in ordered if start <= t <= end]
        before = [rss for t, rss in ordered if t < start]
        base = before[-1] if before else (inside[0] if inside else 0.0)
        peak = max(inside) if inside else base
        out[node] = {"peak_rss": peak, "added_rss": max(0.0, peak - base)}
    return out


# --- the child: one pipeline run ------------------------------------------------------


def child(args) -> int:
    """Runs the data stages (and the Trainer for --train-steps) of the real pipeline,
    logging each component's start and end to --events."""
    import logging

    from absl import logging as absl_logging

    events = open(args.events, "w")

    class Events(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            for what in ("running", "finished"):
                suffix = f" is {what}."
                if message.startswith("Component ") and message.endswith(suffix):
                    node = message[len("Component ") : -len(suffix)]
                    events.write(json.dumps([time.time(), node, what]) + "\n")
                    events.flush()

    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").addHandler(Events())
    from tfx import v1 as tfx

    from breastdx_core import configs
    from breastdx_core.configs import TRAINER_MODULE_FILE, TRANSFORM_MODULE_FILE
    from pipeline.pipeline import _data_stages

    overrides = {"workdir": args.workdir, "data_root": args.data_root}
    wanted = list(DATA_STAGES)
    if args.train_steps:
        overrides.update(train_steps=args.train_steps, eval_steps=2, epochs=1)
        wanted += TRAIN_STAGES
    config = configs.load(env={}, **overrides)
    if args.transform_statistics != "default":  # before/after of the statistics setting
        import functools

        tfx.components.Transform = functools.partial(
            tfx.components.Transform, disable_statistics=args.transform_statistics == "off"
        )
    # The data stages exactly as create_pipeline wires them; the Trainer as it does
    # (create_pipeline itself would wire the Evaluator and Pusher downstream too).
    stages = _data_stages(config, None, TRANSFORM_MODULE_FILE, config.schema_path)
    components = list(stages)
    if args.train_steps:
        components.append(
            tfx.components.Trainer(
                module_file=TRAINER_MODULE_FILE,
                examples=stages.transform.outputs["transformed_examples"],
                transform_graph=stages.transform.outputs["transform_graph"],
                schema=stages.schema_gen.outputs["schema"],
                train_args=tfx.proto.TrainArgs(
                    splits=["train"], num_steps=config.training.train_steps
                ),
                eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=config.training.eval_steps),
                custom_config=config.custom_config("training"),
            ).with_id("Trainer")
        )
    missing = set(wanted) - {c.id for c in components}
    if missing:
        raise SystemExit(f"the pipeline has no component {sorted(missing)}")
    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=False,
        beam_pipeline_args=config.beam_pipeline_args(),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    events.close()
    return 0


# --- the parent: data, sampling, table, plot ------------------------------------------


def tree_rss(pid: int) -> float:
    import psutil

    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for kid in process.children(recursive=True):
            try:
                total += kid.memory_info().rss
            except psutil.Error:
                pass
        return float(total)
    except psutil.Error:
        return 0.0


def folder_bytes(path: str) -> int:
    total = 0
    for base, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(base, name))
            except OSError:
                pass
    return total


def write_data(root: str, images: int) -> dict[str, float]:
    from pipeline import synthetic

    patients, per_patient = scaled_shape(images)
    marker = os.path.join(root, ".written.json")
    if os.path.isfile(marker):
        return json.load(open(marker))
    started = time.perf_counter()
    summary = synthetic.write_idc(root, patients=patients, patches_per_patient=per_patient, seed=13)
    sizes = [
        os.path.getsize(os.path.join(b, n))
        for b, _, ns in os.walk(root)
        for n in ns
        if n.endswith(".png")
    ]
    info = {
        "images": summary.images,
        "patients": summary.patients,
        "positive": summary.by_class["1"] / max(1, summary.images),
        "mean_png_bytes": sum(sizes) / max(1, len(sizes)),
        "write_s": time.perf_counter() - started,
    }
    json.dump(info, open(marker, "w"))
    return info


def measure(
    images: int, workdir: str, train_steps: int, transform_statistics: str = "default"
) -> dict[str, object]:
    base = os.path.join(workdir, f"n{images}")
    data_root = os.path.join(workdir, "data", f"idc-{images}")
    info = write_data(data_root, images)
    run_dir = os.path.join(base, "run")
    if os.path.isdir(run_dir):
        import shutil

        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    events_path = os.path.join(base, "events.jsonl")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "_child",
        "--workdir",
        run_dir,
        "--data-root",
        data_root,
        "--events",
        events_path,
        "--train-steps",
        str(train_steps),
        "--transform-statistics",
        transform_statistics,
    ]
    log = open(os.path.join(base, "run.log"), "w")
    started = time.time()
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.time(), tree_rss(process.pid)))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    wall = time.time() - started
    log.close()
    if process.returncode != 0:
        tail = open(os.path.join(base, "run.log")).read()[-3000:]
        raise SystemExit(f"pipeline run at {images} images failed ({process.returncode}):\n{tail}")
    events = [tuple(json.loads(line)) for line in open(events_path)]
    windows = stage_windows(events)
    memory = attribute(samples, windows)
    pipeline_root = os.path.join(run_dir, "pipelines", "breastdx-idc")
    stages = {}
    for node, (start, end) in windows.items():
        stages[node] = {
            "wall_s": end - start,
            **memory[node],
            "output_bytes": folder_bytes(os.path.join(pipeline_root, node)),
        }
    return {
        "images": info["images"],
        "requested": images,
        "data": info,
        "run_wall_s": wall,
        "run_peak_rss": max(rss for _, rss in samples) if samples else 0.0,
        "child_maxrss": usage.ru_maxrss * 1024.0,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load_before": os.getloadavg(),
        "train_steps": train_steps,
        "transform_statistics": transform_statistics,
        "stages": stages,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GiB"


def stage_order(results: list[dict]) -> list[str]:
    seen = [s for s in DATA_STAGES + TRAIN_STAGES if any(s in r["stages"] for r in results)]
    return seen


def table(results: list[dict]) -> str:
    lines = [
        "| images | stage | wall | peak RSS of the run | RSS added | output |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(results, key=lambda r: r["images"]):
        for stage in stage_order([r]):
            s = r["stages"][stage]
            lines.append(
                f"| {r['images']:,} | {stage} | {s['wall_s']:.1f} s | {s['peak_rss'] / MIB:,.0f} MiB | "
                f"{s['added_rss'] / MIB:,.0f} MiB | {human_bytes(s['output_bytes'])} |"
            )
        lines.append(
            f"| {r['images']:,} | whole run (imports included) | {r['run_wall_s']:.1f} s | "
            f"{r['run_peak_rss'] / MIB:,.0f} MiB | – | – |"
        )
    return "\n".join(lines)


def compact_table(results: list[dict]) -> str:
    """One row per size: each data stage's wall time, their sum, the run's peak RSS and
    Transform's output (docs/results/scale.md)."""
    shown = [s for s in ("ImageExampleGen", "StatisticsGen", "ExampleValidator", "Transform")]
    lines = [
        "| images | patients | "
        + " | ".join(shown)
        + " | data stages | peak RSS of the run | Transform output |",
        "| ---: | ---: | " + " | ".join("---:" for _ in shown) + " | ---: | ---: | ---: |",
    ]
    for r in sorted(results, key=lambda r: r["images"]):
        stages = r["stages"]
        total = sum(stages[s]["wall_s"] for s in DATA_STAGES if s in stages)
        cells = [f"{stages[s]['wall_s']:.1f} s" if s in stages else "–" for s in shown]
        out = stages.get("Transform", {}).get("output_bytes", 0)
        lines.append(
            f"| {r['images']:,} | {r['data']['patients']} | "
            + " | ".join(cells)
            + f" | {total / 60:.1f} min | {r['run_peak_rss'] / MIB / 1024:.2f} GiB | {human_bytes(out)} |"
        )
    return "\n".join(lines)


def growth(results: list[dict]) -> str:
    ordered = sorted(results, key=lambda r: r["images"])
    if len({r["images"] for r in ordered}) < 2:
        return "(one size: no exponent)"
    lines = [
        f"| stage | time exponent (all sizes) | local exponent (two largest) | "
        f"time at {REAL_IMAGES:,} (extrapolated) | peak RSS exponent |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for stage in stage_order(ordered) + ["data stages"]:
        rows = [r for r in ordered if stage in r["stages"] or stage == "data stages"]
        if len(rows) < 2:
            continue
        sizes = [r["images"] for r in rows]
        if stage == "data stages":
            times = [
                sum(r["stages"][s]["wall_s"] for s in DATA_STAGES if s in r["stages"]) for r in rows
            ]
            rss = [
                max(r["stages"][s]["peak_rss"] for s in DATA_STAGES if s in r["stages"])
                for r in rows
            ]
        else:
            times = [max(r["stages"][stage]["wall_s"], 1e-3) for r in rows]
            rss = [r["stages"][stage]["peak_rss"] for r in rows]
        local = growth_exponent(sizes[-2:], times[-2:])
        predicted = extrapolate(sizes, times, REAL_IMAGES)
        measured = [t for s, t in zip(sizes, times) if s >= REAL_IMAGES * 0.99]
        at_full = (
            f"{measured[0] / 60:.1f} min (measured)" if measured else f"{predicted / 60:.1f} min"
        )
        lines.append(
            f"| {stage} | {growth_exponent(sizes, times):.2f} | {local:.2f} | {at_full} | "
            f"{growth_exponent(sizes, rss):.2f} |"
        )
    return "\n".join(lines)


def plot(
    results: list[dict],
    path: str,
    before: list[dict] | None = None,
    before_label: str = "before",
    earlier: list[dict] | None = None,
    earlier_label: str = "earlier code",
) -> None:
    """Solid: ``results`` per stage; dashed grey: ``before`` (a run before a fix);
    hollow markers, not joined: ``earlier`` (rows measured on other code, e.g. a size too
    long to run again)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(results, key=lambda r: r["images"])
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    for stage in stage_order(ordered):
        rows = [r for r in ordered if stage in r["stages"]]
        sizes = [r["images"] for r in rows]
        ax_t.plot(sizes, [max(r["stages"][stage]["wall_s"], 1e-2) for r in rows], "o-", label=stage)
        ax_m.plot(sizes, [r["stages"][stage]["peak_rss"] / MIB for r in rows], "o-", label=stage)
    sizes = [r["images"] for r in ordered]
    if sizes:
        totals = [
            sum(r["stages"][s]["wall_s"] for s in DATA_STAGES if s in r["stages"]) for r in ordered
        ]
        ax_t.plot(sizes, totals, "s-", color="black", label="data stages (sum)")
        ax_t.plot(
            [sizes[-1], REAL_IMAGES],
            [totals[-1], totals[-1] * REAL_IMAGES / sizes[-1]],
            ":",
            color="black",
            label="data stages, linear from the largest size",
        )
    if earlier:
        colours = {line.get_label(): line.get_color() for line in ax_t.get_lines()}
        for r in earlier:
            for stage in stage_order([r]):
                style = dict(marker="o", mfc="none", ls="none", color=colours.get(stage, "grey"))
                ax_t.plot([r["images"]], [max(r["stages"][stage]["wall_s"], 1e-2)], **style)
                ax_m.plot([r["images"]], [r["stages"][stage]["peak_rss"] / MIB], **style)
            total = sum(r["stages"][s]["wall_s"] for s in DATA_STAGES if s in r["stages"])
            ax_t.plot(
                [r["images"]],
                [total],
                marker="s",
                mfc="none",
                ls="none",
                color="black",
                label=f"hollow: {earlier_label}",
            )
    if before:
        earlier = sorted(before, key=lambda r: r["images"])
        ax_t.plot(
            [r["images"] for r in earlier],
            [
                sum(r["stages"][s]["wall_s"] for s in DATA_STAGES if s in r["stages"])
                for r in earlier
            ],
            "s--",
            color="grey",
            label=f"data stages, {before_label}",
        )
        ax_m.plot(
            [r["images"] for r in earlier],
            [r["run_peak_rss"] / MIB for r in earlier],
            "s--",
            color="grey",
            label=f"whole run, {before_label}",
        )
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("images (synthetic IDC, real set's shape)")
        ax.axvline(REAL_IMAGES, color="grey", lw=0.8, ls="--")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_ylabel("wall time (s)")
    ax_t.set_title("time per stage (2 cores)")
    ax_m.set_ylabel("peak RSS of the run during the stage (MiB)")
    ax_m.set_title("memory")
    ax_m.axhline(4096, color="red", lw=0.8, ls="--", label="4 GiB goal")
    ax_t.legend(fontsize=7)
    ax_m.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def load_results(path: str) -> list[dict]:
    return json.load(open(path)) if os.path.isfile(path) else []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        parser = argparse.ArgumentParser()
        for flag in ("--workdir", "--data-root", "--events"):
            parser.add_argument(flag, required=True)
        parser.add_argument("--train-steps", type=int, default=0)
        parser.add_argument("--transform-statistics", default="default")
        return child(parser.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--images", type=int, nargs="*", default=[1000, 3000])
    parser.add_argument(
        "--workdir", default=DEFAULT_WORKDIR, help="data, runs and results (not the repo)"
    )
    parser.add_argument("--results", help="results JSON (default: WORKDIR/results.json)")
    parser.add_argument(
        "--train-steps", type=int, default=0, help="also run the Trainer for this many steps"
    )
    parser.add_argument("--plot", default=DEFAULT_PLOT, help="PNG to write ('' for none)")
    parser.add_argument(
        "--transform-statistics",
        choices=("default", "on", "off"),
        default="default",
        help="Transform's pre/post-transform statistics: as the pipeline sets them, or forced",
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="measure nothing: table and plot from --results"
    )
    parser.add_argument(
        "--compare", help="an earlier results JSON to draw dashed (e.g. before a fix)"
    )
    parser.add_argument("--compare-label", default="before")
    parser.add_argument(
        "--earlier",
        help="a results JSON measured on other code, drawn as hollow markers only "
        "(in no table or exponent)",
    )
    parser.add_argument("--earlier-label", default="earlier code")
    parser.add_argument(
        "--drop-data", action="store_true", help="remove each size's image tree and run after it"
    )
    args = parser.parse_args(argv)
    results_path = args.results or os.path.join(args.workdir, "results.json")
    results = load_results(results_path)
    if not args.plot_only:
        for images in args.images:
            print(f"{images:,} images: writing data and running the data stages ...", flush=True)
            result = measure(images, args.workdir, args.train_steps, args.transform_statistics)
            results = [r for r in results if r["requested"] != images] + [result]
            os.makedirs(os.path.dirname(results_path) or ".", exist_ok=True)
            json.dump(results, open(results_path, "w"), indent=1)
            print(
                f"  {result['images']:,} images ({result['data']['patients']} patients) in "
                f"{result['run_wall_s']:.0f} s, peak RSS {result['run_peak_rss'] / MIB:,.0f} MiB",
                flush=True,
            )
            if args.drop_data:
                import shutil

                shutil.rmtree(
                    os.path.join(args.workdir, "data", f"idc-{images}"), ignore_errors=True
                )
                shutil.rmtree(os.path.join(args.workdir, f"n{images}", "run"), ignore_errors=True)
    if not results:
        print("no results")
        return 1
    print(f"\n{os.cpu_count()} CPUs; results in {results_path}\n")
    print(table(results))
    print()
    print(compact_table(results))
    print()
    print(growth(results))
    if args.plot:
        plot(
            results,
            args.plot,
            load_results(args.compare) if args.compare else None,
            args.compare_label,
            load_results(args.earlier) if args.earlier else None,
            args.earlier_label,
        )
        print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
