"""`breastdx`: the project's one command line (the `make` targets call it).

Verbs:
    data      write the synthetic data sets (IDC, BUSI, CSV manifest layouts)
    demo      run the whole pipeline locally (synthetic data unless --data-root); --variant
              classify (default), segment (U-Net, BUSI masks) or mammo (CBIS-DDSM, task cbis)
    summary   print the last local run's summary table
    serve / web / predict            the model server, the web app, predictions
    pipeline ... / run ...           Kubeflow Pipelines / Vertex AI (compile, update, runs)

Settings: defaults in breastdx_core/configs.py, overridden by BREASTDX_* environment
variables and then by these flags (configs.load is the one place that merges them).
What the terminal shows while a pipeline runs: pipeline/console.py. The verbs of other
modules are registered by importing them (VERB_REGISTRARS); none imports this module.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings

# Entry point: Keras 2 (tf-keras) everywhere, chosen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TF's C++ start-up chatter (CUDA plug-in registration on a CPU machine) hides progress.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PIP_QUIET", "1")  # TFX pip-installs its user-code wheels per component

log = logging.getLogger("breastdx")

from breastdx_cli import kfp as kfp_cli  # noqa: E402
from breastdx_cli import lab as lab_cli  # noqa: E402
from breastdx_cli import mammo as mammo_cli  # noqa: E402
from breastdx_cli import predict as predict_cli  # noqa: E402

# The console (progress filter, log file, quiet runs) lives below this module, so the
# verb modules use it without importing this one back (no import loop).
from breastdx_cli import weights as pretrained_cli  # noqa: E402
from breastdx_core import cli_options, errors  # noqa: E402
from lab import cv as lab_cv  # noqa: E402
from pipeline.console import ensure_synthetic, quiet_run, setup_logging  # noqa: E402,F401
from serving import cli as serving_cli  # noqa: E402
from webapp import cli as webapp_cli  # noqa: E402

# Verbs other modules contribute: each function adds its parsers to the subparsers.
# Registered by plain imports (above), not loaded by name.
VERB_REGISTRARS = (
    serving_cli.add_serve_parser,
    webapp_cli.add_web_parser,
    predict_cli.add_predict_parser,
    kfp_cli.add_parsers,
    lab_cli.add_parsers,
    lab_cv.add_parser,
    pretrained_cli.add_parsers,
)


def _config(args: argparse.Namespace):
    from breastdx_core import configs

    return configs.load(
        task=getattr(args, "task", None),
        data_root=getattr(args, "data_root", None),
        layout=getattr(args, "layout", None),
        workdir=getattr(args, "workdir", None),
        backbone=getattr(args, "backbone", None),
        weights=getattr(args, "weights", None),
        train_steps=getattr(args, "train_steps", None),
        epochs=getattr(args, "epochs", None),
        max_train_minutes=getattr(args, "max_train_minutes", None),
        seed=getattr(args, "seed", None),
        variant=getattr(args, "variant", None),
        seg_blackbox=True if getattr(args, "blackbox", False) else None,
        **(mammo_cli.full_size_settings() if getattr(args, "full_size", False) else {}),
    )


def cmd_data(args: argparse.Namespace) -> int:
    from pipeline import synthetic

    out = os.path.abspath(args.out)
    idc = synthetic.write_idc(os.path.join(out, "idc"), args.patients, args.patches, args.seed)
    busi = synthetic.write_busi(os.path.join(out, "busi"), seed=args.seed)
    manifest = synthetic.write_manifest(os.path.join(out, "manifest"), seed=args.seed)
    for s in (idc, busi, manifest):
        print(
            f"{s.root}: {s.images} images, {s.patients} patients, {s.files} files; planted quirks: "
            f"{len(s.quirks)}"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    config = _config(args)
    log_file = os.path.join(
        config.workdir, "logs", f"{config.pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    )
    setup_logging(log_file, args.verbose)
    if args.data_root is None and "BREASTDX_DATA_ROOT" not in os.environ:
        ensure_synthetic(config)
    import local_runner  # TF-free until its run()

    # The data's problem (a PreflightError: one line, exit 2, in `main`) before TensorFlow
    # and TFX take ~10 s to load.
    images = local_runner.check_data(config)
    from pipeline import summary

    started = time.time()
    log.info("pipeline %s: data %s; full log %s", config.pipeline_name, config.data_root, log_file)
    if config.variant == "classify" and not config.synthetic_data:
        from breastdx_core import configs

        estimate = configs.run_estimate(config, images)
        if estimate:
            print(f"{config.pipeline_name}: {estimate}", flush=True)
    try:
        with quiet_run(log_file):
            local_runner.run(config, checked=True)
    except Exception as err:  # a component failed: its own message, then where the details are
        print(f"error: the pipeline failed: {err}\n(full log: {log_file})", file=sys.stderr)
        return 1
    log.info("pipeline finished in %.0f s", time.time() - started)
    result = summary.summarize(config)
    print(summary.render(result))
    return summary.exit_status(result)


def cmd_summary(args: argparse.Namespace) -> int:
    from pipeline import summary

    config = _config(args)
    if not os.path.exists(config.metadata_path):
        print(
            f"error: no local run found (no metadata at {config.metadata_path}); run `breastdx demo` first",
            file=sys.stderr,
        )
        return 2
    print(summary.render(summary.summarize(config)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="breastdx",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    data = verbs.add_parser(
        "data",
        help="write the synthetic data sets",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data.add_argument("--out", default=os.path.join("workdir", "synthetic"), help="output folder")
    data.add_argument("--patients", type=int, default=60, help="IDC patients")
    data.add_argument("--patches", type=int, default=33, help="IDC patches per patient (mean)")
    data.add_argument("--seed", type=int, default=7, help="random seed")
    data.set_defaults(func=cmd_data)

    from breastdx_core import configs  # TF-free: the variant names for --help

    demo = verbs.add_parser(
        "demo",
        help="run the whole pipeline locally and print the summary",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cli_options.add_data_options(demo)
    cli_options.add_model_options(demo)
    demo.add_argument(
        "--train-steps",
        type=int,
        help="a step budget (default: 24 on the synthetic demo; 0 with --data-root: whole epochs)",
    )
    demo.add_argument(
        "--epochs",
        type=int,
        help="passes over the train split with --data-root (default from configs: 8)",
    )
    demo.add_argument(
        "--max-train-minutes", type=float, help="wall-time training budget (default: none)"
    )
    demo.add_argument("--seed", type=int, help="seed for the synthetic data and training")
    demo.add_argument(
        "--variant",
        choices=configs.VARIANTS,
        help="classify (default), segment (U-Net on images with masks) or mammo (task cbis: a "
        "CBIS-DDSM release -> patch and whole-image classifiers with a heatmap signature)",
    )
    demo.add_argument(
        "--blackbox",
        action="store_true",
        help="segment: train non-malignant masks as empty; classify by predicted lesion area",
    )
    demo.add_argument(
        "--full-size",
        action="store_true",
        help="mammo: the study's sizes and schedules (1152x896 images, 224 patches; slow on a CPU)",
    )
    cli_options.add_verbose_option(demo)
    demo.set_defaults(func=cmd_demo)

    summary = verbs.add_parser(
        "summary",
        help="print the last local run's summary",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cli_options.add_data_options(summary)
    summary.set_defaults(func=cmd_summary)

    for add_parsers in VERB_REGISTRARS:
        add_parsers(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
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
    except errors.BreastdxError as err:  # a user's error: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except ValueError as err:  # settings validated by plain ValueErrors (configs.load)
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
