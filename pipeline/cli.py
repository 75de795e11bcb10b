"""`breastdx`: the project's one command line (the `make` targets call it).

Verbs:
    data      write the synthetic data sets (IDC, BUSI, CSV manifest layouts)
    demo      run the whole pipeline locally (synthetic IDC data unless --data-root)
    summary   print the last local run's summary table
    serve / web / predict            the model server, the web app, predictions
    pipeline ... / run ...           Kubeflow Pipelines / Vertex AI (compile, update, runs)

Settings: defaults in pipeline/configs.py, overridden by BREASTDX_* environment
variables and then by these flags (configs.load is the one place that merges them).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional

# Entry point: Keras 2 (tf-keras) everywhere, chosen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TF's C++ start-up chatter (CUDA plug-in registration on a CPU machine) hides progress.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PIP_QUIET", "1")  # TFX pip-installs its user-code wheels per component

log = logging.getLogger("breastdx")

_COMPONENT_EVENT = re.compile(r"Component (\S+) is (running|finished)")

# Verbs other modules contribute: (module, function that adds its parsers).
_PLUGINS = (
    ("serving.cli", "add_serve_parser"),
    ("webapp.cli", "add_web_parser"),
    ("serving.predict_cli", "add_predict_parser"),
    ("pipeline.kfp_cli", "add_parsers"),
    ("pipeline.lab.cli", "add_parsers"),
    ("pipeline.lab.cv", "add_parser"),
    ("pipeline.mammo.cli", "add_parsers"),
)


class _Progress(logging.Filter):
    """Lets through our own messages, errors, and TFX's component start/finish lines
    (with the component's wall time); the full log goes to a file."""

    def __init__(self) -> None:
        super().__init__()
        self._started: Dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        message = record.getMessage()
        match = _COMPONENT_EVENT.search(message)
        if match:
            name, event = match.groups()
            if event == "running":
                self._started[name] = time.time()
                record.msg, record.args = f"{name} ...", ()
            else:
                seconds = time.time() - self._started.get(name, time.time())
                record.msg, record.args = f"{name} done in {seconds:.1f} s", ()
            return True
        return record.name.split(".")[0] in ("breastdx", "components", "pipeline", "serving", "webapp")


def setup_logging(log_file: Optional[str], verbose: bool = False) -> None:
    """Concise progress on stderr; everything (TFX, Beam, TF) in ``log_file``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not verbose:
        console.addFilter(_Progress())
    root.addHandler(console)
    if log_file:
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
        full = logging.FileHandler(log_file)
        full.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(full)


def _config(args: argparse.Namespace):
    from pipeline import configs

    return configs.load(
        task=getattr(args, "task", None),
        data_root=getattr(args, "data_root", None),
        layout=getattr(args, "layout", None),
        workdir=getattr(args, "workdir", None),
        backbone=getattr(args, "backbone", None),
        train_steps=getattr(args, "train_steps", None),
        seed=getattr(args, "seed", None),
    )


@contextlib.contextmanager
def _stdout_to(path: str) -> Iterator[None]:
    """Sends file descriptor 1 to ``path`` for the block: TFX's subprocesses (building
    the user-code wheels) print pages of setuptools output there; progress stays on
    stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(path, "a") as target:
        os.dup2(target.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def ensure_synthetic(config) -> bool:
    """Writes the synthetic data set for the config's task if its folder is missing.
    Returns True when it wrote it."""
    from pipeline import synthetic

    if os.path.isdir(config.data_root) and os.listdir(config.data_root):
        return False
    log.info("writing synthetic %s data to %s", config.task, config.data_root)
    if config.task == "idc":
        summary = synthetic.write_idc(config.data_root, config.synthetic_patients,
                                      config.synthetic_patches_per_patient, config.seed)
    elif config.task == "busi":
        summary = synthetic.write_busi(config.data_root, seed=config.seed)
    else:
        raise ValueError(f"no synthetic generator for task {config.task!r}")
    log.info("wrote %d images of %d patients (%d files with the planted quirks)", summary.images,
             summary.patients, summary.files)
    return True


def cmd_data(args: argparse.Namespace) -> int:
    from pipeline import synthetic

    out = os.path.abspath(args.out)
    idc = synthetic.write_idc(os.path.join(out, "idc"), args.patients, args.patches, args.seed)
    busi = synthetic.write_busi(os.path.join(out, "busi"), seed=args.seed)
    manifest = synthetic.write_manifest(os.path.join(out, "manifest"), seed=args.seed)
    for s in (idc, busi, manifest):
        print(f"{s.root}: {s.images} images, {s.patients} patients, {s.files} files; planted quirks: "
              f"{len(s.quirks)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    config = _config(args)
    log_file = os.path.join(config.workdir, "logs", f"{config.pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}.log")
    setup_logging(log_file, args.verbose)
    if args.data_root is None and "BREASTDX_DATA_ROOT" not in os.environ:
        ensure_synthetic(config)
    import local_runner
    from pipeline import preflight, summary

    started = time.time()
    log.info("pipeline %s: data %s; full log %s", config.pipeline_name, config.data_root, log_file)
    try:
        with _stdout_to(log_file):
            local_runner.run(config)
    except preflight.PreflightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a component failed: its own message, then where the details are
        print(f"error: the pipeline failed: {err}\n(full log: {log_file})", file=sys.stderr)
        return 1
    log.info("pipeline finished in %.0f s", time.time() - started)
    print(summary.render(summary.summarize(config)))
    from pipeline.lab import evaluation_report

    written = evaluation_report.report_latest(config)
    if written:
        print(f"evaluation report: {written.get('html', written)}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from pipeline import summary

    config = _config(args)
    if not os.path.exists(config.metadata_path):
        print(f"error: no local run found (no metadata at {config.metadata_path}); run `breastdx demo` first",
              file=sys.stderr)
        return 2
    print(summary.render(summary.summarize(config)))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="task preset: idc or busi (env BREASTDX_TASK; default idc)")
    parser.add_argument("--data-root", help="image root: IDC tree, class folders or a folder with manifest.csv "
                                            "(env BREASTDX_DATA_ROOT; default: synthetic data under the workdir)")
    parser.add_argument("--layout", help="auto, idc, class_folders or manifest (default auto)")
    parser.add_argument("--workdir", help="where data, pipeline roots, metadata and served models go "
                                          "(env BREASTDX_WORKDIR; default ./workdir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="breastdx", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    data = verbs.add_parser("data", help="write the synthetic data sets",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data.add_argument("--out", default=os.path.join("workdir", "synthetic"), help="output folder")
    data.add_argument("--patients", type=int, default=60, help="IDC patients")
    data.add_argument("--patches", type=int, default=33, help="IDC patches per patient (mean)")
    data.add_argument("--seed", type=int, default=7, help="random seed")
    data.set_defaults(func=cmd_data)

    demo = verbs.add_parser("demo", help="run the whole pipeline locally and print the summary",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(demo)
    demo.add_argument("--backbone", help="vgg16 (default), densenet201, inception_resnet_v2, nasnet_mobile, "
                                         "resnet50, resnet50_v2, resnet152_v2, xception")
    demo.add_argument("--train-steps", type=int, help="training steps (default from configs: 24)")
    demo.add_argument("--seed", type=int, help="seed for the synthetic data and training")
    demo.add_argument("--verbose", action="store_true", help="show every log line, not just progress")
    demo.set_defaults(func=cmd_demo)

    summary = verbs.add_parser("summary", help="print the last local run's summary",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _common(summary)
    summary.set_defaults(func=cmd_summary)

    for module_name, function in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # that part of the system is not installed in this build
            raise
        getattr(module, function)(verbs)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    # google-cloud libraries warn about Python 3.10 at import; TFX 1.16 needs 3.9-3.10.
    warnings.filterwarnings("ignore", category=FutureWarning)
    # TFMA divides by zero for thresholds no example reaches; the metrics are still right.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="tensorflow_model_analysis")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        setup_logging(None)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # bad settings: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
