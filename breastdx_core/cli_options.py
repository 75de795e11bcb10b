"""The command-line options every `breastdx` verb shares, defined once.

`--task`, `--data-root`, `--layout`, `--workdir`, `--backbone`, `--weights` and `--verbose`
mean the same on every verb, with the same ``choices`` (from `breastdx_core.registry` and
`breastdx_core.contract`) and help. The verbs of breastdx_cli/main.py, breastdx_cli/lab.py
and lab/cv.py add them with these functions; each flag reaches `configs.load()` under its
setting's name. On the ground floor (argparse only) so that lab/, below the CLI's floor,
uses the same definitions.
"""

from __future__ import annotations

import argparse

from breastdx_core import contract, registry


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--task``, ``--data-root``, ``--layout``, ``--workdir``: what to read, where to write."""
    tasks = tuple(contract.TASKS)
    parser.add_argument(
        "--task",
        choices=tasks,
        help=f"task preset: {', '.join(tasks)} (env BREASTDX_TASK; default idc)",
    )
    parser.add_argument(
        "--data-root",
        help="image root: IDC tree, class folders or a folder with manifest.csv "
        "(env BREASTDX_DATA_ROOT; default: synthetic data under the workdir)",
    )
    parser.add_argument(
        "--layout",
        choices=registry.LAYOUTS,
        help=f"one of {', '.join(registry.LAYOUTS)} (default auto)",
    )
    parser.add_argument(
        "--workdir",
        help="where data, pipeline roots, metadata, reports and served models go "
        "(env BREASTDX_WORKDIR; default ./workdir)",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--backbone`` (one of `registry.BACKBONES`) and ``--weights``."""
    parser.add_argument(
        "--backbone",
        choices=registry.BACKBONES,
        metavar="BACKBONE",
        help="one of " + ", ".join(registry.BACKBONES) + " (default from configs: per task)",
    )
    parser.add_argument(
        "--weights",
        help="backbone weights: none, 'imagenet' or a local .h5 file "
        "(default from configs: per task)",
    )


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help="show every log line, not just progress"
    )
