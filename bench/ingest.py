"""ImageExampleGen throughput against a naive decode/re-encode baseline and plain reading.

    python bench/ingest.py [--images N]

Writes N synthetic IDC patches (once, cached under workdir/bench), then times on the
same files, page cache warm:
  (b) plain reading: open + read every file;
  ImageExampleGen: the component's executor (Beam DirectRunner) -> GZIP TFRecord splits + report;
  ImageExampleGen per-file work alone (read, header, PNG chunk/CRC walk, tf.Example), no Beam;
  (a) naive: decode each PNG with Pillow, re-encode it, write the same records (GZIP,
      as a TFRecord writer is usually set up).
Prints images/s and the ratios the spine issue sets as goals (>= 10x (a), >= 50 % of (b)).
"""
import argparse
import io
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from components.image_ingest import component, executor, layouts  # noqa: E402
from breastdx_core import image_files  # noqa: E402
from breastdx_core import configs, contract  # noqa: E402
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
            writer.write(executor.make_example(encoded, info, c).SerializeToString())


def per_file(candidates, out):
    with tf.io.TFRecordWriter(out) as writer:
        for c in candidates:
            serialized, _ = executor.read_candidate(c, "structure")
            if serialized:
                writer.write(serialized)


def executor_properties(root, workdir):
    """The exec properties ImageExampleGen's component compiles (built before timing: it
    imports the pipeline's modules)."""
    from tfx.utils import proto_utils

    from pipeline.pipeline import split_config

    gen = component.ImageExampleGen(image_root=root, task="idc", layout="idc",
                                    output_config=split_config(configs.load(env={}, workdir=workdir)))
    return {k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v
            for k, v in gen.exec_properties.items() if v is not None}


def run_executor(properties, out):
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(out, "examples")
    executor.Executor().Do({}, {"examples": [examples]}, dict(properties))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000, help="synthetic IDC patches to ingest")
    args = parser.parse_args(argv)
    root = os.path.join(configs.PROJECT_DIR, "workdir", "bench", f"idc-{args.images}")
    if not os.path.isdir(root):
        per_patient = 50
        synthetic.write_idc(root, patients=max(1, args.images // per_patient), patches_per_patient=per_patient)
    task = contract.get_task("idc")
    verdicts = list(layouts.scan(root, task, "idc"))
    candidates = [v for v in verdicts if isinstance(v, layouts.Candidate)]
    paths = [c.path for c in candidates]
    n = len(paths)
    plain_read(paths)  # warm the page cache for every contender
    with tempfile.TemporaryDirectory() as tmp:
        t_plain, size = timed(lambda: plain_read(paths))
        properties = executor_properties(root, tmp)
        t_exec, _ = timed(lambda: run_executor(properties, os.path.join(tmp, "exec")))
        t_file, _ = timed(lambda: per_file(candidates, os.path.join(tmp, "perfile.tfrecord")))
        t_naive, _ = timed(lambda: naive(candidates, os.path.join(tmp, "naive.tfrecord.gz")))
    rate = lambda t: n / t  # noqa: E731
    print(f"{n} files, {size / n / 1024:.1f} KiB mean, {os.cpu_count()} CPUs, Beam DirectRunner (in-memory)")
    print(f"{'contender':44s} {'seconds':>8s} {'images/s':>10s}")
    for name, t in [("(b) plain reading", t_plain), ("ImageExampleGen executor (Beam, incl. start-up)", t_exec),
                    ("ImageExampleGen per-file work, no Beam", t_file), ("(a) naive decode + re-encode", t_naive)]:
        print(f"{name:44s} {t:8.2f} {rate(t):10.0f}")
    print(f"ImageExampleGen vs naive (goal >= 10x):          {t_naive / t_exec:5.1f}x (per-file work: "
          f"{t_naive / t_file:.1f}x)")
    print(f"ImageExampleGen vs plain (goal >= 50 %): {100 * t_plain / t_exec:5.1f} % (per-file work: "
          f"{100 * t_plain / t_file:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
