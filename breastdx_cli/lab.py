"""The model lab's verbs for `breastdx`: ``compare`` and ``report``.

`breastdx_cli/main.py` calls `add_parsers(subparsers)` (its VERB_REGISTRARS).

    breastdx compare [--backbones a,b] [--budget small|real] [--workdir DIR]
    breastdx report [--version V | --all] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from breastdx_core import cli_options

log = logging.getLogger("breastdx")


def _lab_config(args: argparse.Namespace):
    from breastdx_core import configs

    return configs.load(
        task=args.task,
        data_root=args.data_root,
        layout=args.layout,
        workdir=args.workdir,
        seed=getattr(args, "seed", None),
        weights=getattr(args, "weights", None),
    )


def _logging(config, args: argparse.Namespace, verb: str) -> str:
    from pipeline import console as cli  # not breastdx_cli.main: it imports this module

    log_file = os.path.join(config.workdir, "logs", f"{verb}-{time.strftime('%Y%m%d-%H%M%S')}.log")
    cli.setup_logging(log_file, getattr(args, "verbose", False))
    return log_file


def cmd_compare(args: argparse.Namespace) -> int:
    from lab import compare
    from pipeline import console as cli  # not breastdx_cli.main: it imports this module

    config = _lab_config(args)
    log_file = _logging(config, args, "compare")
    if args.data_root is None and "BREASTDX_DATA_ROOT" not in os.environ:
        cli.ensure_synthetic(config)
    backbones = (
        [b.strip() for b in args.backbones.split(",") if b.strip()]
        if args.backbones
        else compare.STUDY
    )
    started = time.time()
    log.info(
        "compare: %d architectures, %s budget; full log %s", len(backbones), args.budget, log_file
    )
    result = compare.compare(config, backbones, args.budget, args.out, args.keep_models)
    with open(result["files"]["md"]) as handle:
        print(handle.read())
    print(f"report: {result['files']['html']} ({time.time() - started:.0f} s)")
    if result["meta"]["synthetic_data"]:
        print(
            "Metrics on SYNTHETIC data: they show the study runs, not how the backbones do on tissue."
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab import compare, evaluation_report

    config = _lab_config(args)
    _logging(config, args, "report")
    versions = evaluation_report.pushed_versions(config)
    if args.version is not None:
        versions = [v for v in versions if os.path.basename(v) == str(args.version)]
    elif not args.all:
        versions = versions[-1:]
    if not versions:
        print(
            f"error: no pushed model under {os.path.join(config.serving_root, config.model_name)}"
            f"{f' with version {args.version}' if args.version is not None else ''}; run `breastdx demo` first",
            file=sys.stderr,
        )
        return 2
    data = compare.find_run_data(config)
    if data is None:
        print(f"error: no ImageExampleGen output in {config.metadata_path}", file=sys.stderr)
        return 2
    for version_dir in versions:
        paths = evaluation_report.report_for_version(config, version_dir, data.examples.uri)
        print(f"{version_dir}: {paths['html']}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    cli_options.add_data_options(parser)
    cli_options.add_verbose_option(parser)


def add_parsers(verbs) -> None:
    """Adds ``compare`` and ``report`` to `breastdx`'s sub-parsers."""
    from lab.compare import STUDY

    compare = verbs.add_parser(
        "compare",
        help="train every backbone (and the CNN-LSTM) the same way; table, plots, HTML report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(compare)
    compare.add_argument(
        "--backbones", default=",".join(STUDY), help="comma-separated architectures"
    )
    compare.add_argument(
        "--budget",
        choices=("small", "real"),
        default="small",
        help="small: a few steps each (minutes on CPU); real: the pipeline's training settings",
    )
    compare.add_argument(
        "--weights", help="None, 'imagenet' or a local weights file (default from configs)"
    )
    compare.add_argument("--seed", type=int, help="seed for every model (default from configs)")
    compare.add_argument("--out", help="output folder (default <workdir>/reports/compare)")
    compare.add_argument("--keep-models", action="store_true", help="keep each exported SavedModel")
    compare.set_defaults(func=cmd_compare)

    report = verbs.add_parser(
        "report",
        help="write the evaluation report (HTML + JSON) beside pushed models",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _common(report)
    report.add_argument("--version", type=int, help="this pushed version (default: the newest)")
    report.add_argument("--all", action="store_true", help="every pushed version")
    report.set_defaults(func=cmd_report)
