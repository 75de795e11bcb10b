"""ImageExampleGen throughput against a naive decode/re-encode baseline and plain reading.

    python bench/ingest.py [--images N] [--data-root DIR] [--naive-sample 10000]

Writes N synthetic IDC patches (once, cached under workdir/bench; or reads the IDC tree
at --data-root), then times on the same files, page cache warm:
  (b) plain reading: open + read every file;
  ImageExampleGen: the component's executor end to end (Beam DirectRunner, start-up
      included) -> GZIP TFRecord splits + ingest report;
  and the executor's parts, each alone and without Beam: the path scan; the duplicate
      check before the Beam pass (earlier code: every file read and hashed first; now
      each file is hashed in the per-file work); the per-file work (read, header and
      PNG chunk/CRC walk, SHA-256, tf.Example, split, write to the GZIP TFRecord as the
      executor does, outcome); the same with deflate level 6 (TFX's usual GZIP);
  (a) naive: decode each PNG with Pillow, re-encode it, write the same records (GZIP,
      as a TFRecord writer is usually set up), on the first --naive-sample files.
Prints images/s and the ratios the issues set as goals (>= 10x (a); >= 25 % of (b) end
to end).
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from breastdx_core import (  # noqa: E402
    configs,
    contract,
    image_files,  # noqa: E402
)
from components.image_ingest import component, example_encoder, executor, layouts  # noqa: E402
from pipeline import synthetic  # noqa: E402


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def plain_read(paths):
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += len(handle.read())
    return total


def naive(candidates, out):
    with tf.io.TFRecordWriter(out, options="GZIP") as writer:
        for c in candidates:
            with open(c.path, "rb") as handle:
                data = handle.read()
            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except Exception:
                continue
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded = buffer.getvalue()
            info = image_files.ImageInfo("png", image.height, image.width, len(image.getbands()))
            writer.write(example_encoder.make_example(encoded, info, c).SerializeToString())


def per_file(candidates, out, options, output_config_json=None):
    """The executor's per-file loop without Beam: read and check, the serialized record,
    its split, the write, the outcome (the former executor's equivalents where it lacks
    the current one's, so the bench also runs against earlier code)."""
    if hasattr(executor, "_Splitter"):
        splitter = executor._Splitter(output_config_json)
    else:
        splitter = lambda record, candidate: 0  # noqa: E731
    writers = {}
    outcomes = []
    try:
        for c in candidates:
            record, outcome = executor.read_candidate(c, "structure")
            if record:
                split = splitter(record, c)
                if split not in writers:
                    writers[split] = tf.io.TFRecordWriter(f"{out}-{split}.gz", options)
                writers[split].write(record)
            outcomes.append(outcome)
    finally:
        for writer in writers.values():
            writer.close()
    return json.dumps(outcomes)


def executor_properties(root, workdir):
    """The exec properties ImageExampleGen's component compiles (built before timing: it
    imports the pipeline's modules)."""
    from tfx.utils import proto_utils

    from pipeline.pipeline import split_config

    gen = component.ImageExampleGen(
        image_root=root,
        task="idc",
        layout="idc",
        output_config=split_config(configs.load(env={}, workdir=workdir)),
    )
    return {
        k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v
        for k, v in gen.exec_properties.items()
        if v is not None
    }


def run_executor(properties, out):
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(out, "examples")
    executor.Executor().Do({}, {"examples": [examples]}, dict(properties))
    return examples.uri


def peak_rss_during(fn, every=0.05):
    """(fn's result, the process's RSS before it, its peak RSS while fn ran), in bytes."""
    import threading

    import psutil

    process = psutil.Process()
    base = process.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    return result, base, max(peak[0], process.memory_info().rss)


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(b, n)) for b, _, ns in os.walk(path) for n in ns)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000, help="synthetic IDC patches to ingest")
    parser.add_argument(
        "--data-root", help="an IDC tree to read instead of writing --images synthetic patches"
    )
    parser.add_argument(
        "--naive-sample", type=int, default=10000, help="files the slow naive baseline is timed on"
    )
    parser.add_argument(
        "--workdir", help="scratch folder for the outputs (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    root = args.data_root or os.path.join(
        configs.PROJECT_DIR, "workdir", "bench", f"idc-{args.images}"
    )
    if not os.path.isdir(root):
        per_patient = 50
        synthetic.write_idc(
            root, patients=max(1, args.images // per_patient), patches_per_patient=per_patient
        )
    task = contract.get_task("idc")
    t_scan, verdicts = timed(lambda: list(layouts.scan(root, task, "idc")))
    candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
    paths = [c.path for c in candidates]
    n = len(paths)
    plain_read(paths)  # warm the page cache for every contender
    options = getattr(executor, "RECORD_OPTIONS", tf.io.TFRecordOptions(compression_type="GZIP"))
    level6 = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=6)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t_plain, size = timed(lambda: plain_read(paths))
        properties = executor_properties(root, tmp)
        load = os.getloadavg()
        (t_exec, uri), rss_base, rss_peak = peak_rss_during(
            lambda: timed(lambda: run_executor(properties, os.path.join(tmp, "exec")))
        )
        out_bytes = folder_bytes(uri)
        t_scan, verdicts = timed(lambda: list(layouts.scan(root, task, "idc")))
        if hasattr(
            layouts, "resolve_duplicates"
        ):  # the executor hashes each file as it reads it once
            t_dedup, kept = 0.0, candidates
        else:  # earlier code: every file read and hashed before the Beam pass
            t_dedup, (kept, _, _) = timed(lambda: layouts.deduplicate(candidates))
        config = properties.get("output_config")
        t_file, _ = timed(lambda: per_file(kept, os.path.join(tmp, "perfile"), options, config))
        t_file6, _ = timed(lambda: per_file(kept, os.path.join(tmp, "perfile6"), level6, config))
        sample = candidates[: args.naive_sample]
        t_naive, _ = timed(lambda: naive(sample, os.path.join(tmp, "naive.tfrecord.gz")))
    t_naive_all = t_naive * n / len(sample)
    rate = lambda t: n / t  # noqa: E731
    print(
        f"{n} files under {root}, {size / n / 1024:.1f} KiB mean, {os.cpu_count()} CPUs, "
        f"load average before the executor {load[0]:.2f}, Beam DirectRunner (in-memory)"
    )
    print(
        f"executor output {out_bytes / 2**20:.0f} MiB ({out_bytes / size:.3f} of the images' bytes); "
        f"process RSS {rss_base / 2**20:.0f} MiB before it, peak +{(rss_peak - rss_base) / 2**20:.0f} MiB "
        f"during it ({(rss_peak - rss_base) / n / 1024:.1f} KiB per image)"
    )
    print(f"{'contender':58s} {'seconds':>8s} {'images/s':>10s} {'us/image':>9s}")
    rows = [
        ("(b) plain reading (open + read)", t_plain),
        ("ImageExampleGen executor, end to end (Beam, start-up, report)", t_exec),
        ("  part: path scan", t_scan),
        ("  part: duplicate check before the Beam pass (read + SHA-256)", t_dedup),
        ("  part: per-file work (read, check, SHA-256, tf.Example, write)", t_file),
        (
            "  rest: Beam, TFX, shard files, report (end to end - parts)",
            t_exec - t_scan - t_dedup - t_file,
        ),
        ("per-file work with deflate level 6 instead", t_file6),
        (f"(a) naive decode + re-encode ({len(sample)} files, scaled)", t_naive_all),
    ]
    for name, t in rows:
        if t == 0.0:
            print(f"{name:58s} {'–':>8s} {'–':>10s} {'–':>9s}")
            continue
        print(f"{name:58s} {t:8.2f} {rate(t):10.0f} {1e6 * t / n:9.1f}")
    print(
        f"ImageExampleGen vs naive (goal >= 10x):          {t_naive_all / t_exec:5.1f}x (per-file work: "
        f"{t_naive_all / t_file:.1f}x)"
    )
    print(
        f"ImageExampleGen vs plain (goal >= 25 % end to end): {100 * t_plain / t_exec:5.1f} % (per-file work: "
        f"{100 * t_plain / t_file:.1f} %)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
