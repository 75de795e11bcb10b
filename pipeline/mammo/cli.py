"""`breastdx` verbs for the imaging presets beyond the classifier pipeline.

`pipeline/cli.py` loads this module from its _PLUGINS and calls `add_parsers`:

    mammo-demo     CBIS-DDSM: patches -> patch classifier -> whole-image classifier ->
                   heatmap -> pushed models (synthetic release unless --data-root)
    segment-demo   the U-Net pipeline variant on BUSI-style images with masks
                   (synthetic BUSI unless --data-root); --blackbox for the area classifier
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

log = logging.getLogger("breastdx")


def cmd_mammo_demo(args: argparse.Namespace) -> int:
    from pipeline.cli import setup_logging
    from pipeline.mammo import cbis, demo, models

    settings = {"seed": args.seed, "synthetic_patients": args.patients}
    if args.workdir:
        settings["workdir"] = os.path.abspath(args.workdir)
    if args.data_root:
        settings["data_root"] = os.path.abspath(args.data_root)
    config = demo.MammoConfig(**settings)
    if args.full_size:
        from pipeline import contract

        config.image_size, config.patch_size = contract.CBIS_IMAGE_SIZE, contract.CBIS_PATCH_SIZE
        config.heatmap_stride = contract.CBIS_PATCH_SIZE // 4
        config.patch_schedule, config.whole_schedule = models.PATCH_SCHEDULE, models.WHOLE_SCHEDULE
    if args.weights:
        config.weights = None if args.weights.lower() == "none" else args.weights
    os.makedirs(config.out_dir, exist_ok=True)
    setup_logging(os.path.join(config.workdir, "logs", f"breastdx-cbis-{time.strftime('%Y%m%d-%H%M%S')}.log"),
                  args.verbose)
    try:
        summary = demo.run(config)
    except (cbis.CbisError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    patch, whole = summary["patch"], summary["whole"]
    print(f"patches        {summary['patch_counts']}  ({summary['patches_dir']})")
    print(f"patch model    test accuracy {patch.get('accuracy', float('nan')):.3f} (5 classes), "
          f"malignant AUC {patch.get('malignant_auc')}")
    print(f"whole image    test AUC {whole.get('auc')}, accuracy {whole.get('accuracy')} (n={whole.get('n')})")
    print(f"heatmap        {summary['heatmap']}")
    print(f"pushed         {json.dumps(summary['pushed'])}")
    print(f"time           {summary['seconds']} s")
    print("Metrics on SYNTHETIC data: they show the pipeline works, not how a model does on tissue.")
    from pipeline import contract

    print(contract.RESEARCH_ONLY)
    return 0 if summary["pushed"] else 1


def cmd_segment_demo(args: argparse.Namespace) -> int:
    from pipeline import cli

    os.environ["BREASTDX_VARIANT"] = "segment"
    if args.blackbox:
        os.environ["BREASTDX_SEG_BLACKBOX"] = "true"
    args.task = args.task or "busi"
    args.backbone = None
    return cli.cmd_demo(args)


def add_parsers(verbs: argparse._SubParsersAction) -> None:
    """Adds ``mammo-demo`` and ``segment-demo`` to the ``breastdx`` verbs."""
    mammo = verbs.add_parser("mammo-demo", help="CBIS-DDSM: patch and whole-image classifiers, heatmap, push",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mammo.add_argument("--data-root", help="CBIS-DDSM release (the case-description CSVs and the CBIS-DDSM/ "
                                           "image folder); none: a synthetic release under the workdir")
    mammo.add_argument("--workdir", help="where data, patches, heatmaps and served models go; none: ./workdir")
    mammo.add_argument("--weights", help="backbone weights: none, imagenet or a local .h5 file")
    mammo.add_argument("--full-size", action="store_true",
                       help="the study's sizes and schedules (1152x896 images, 224 patches; slow on a CPU)")
    mammo.add_argument("--patients", type=int, default=24, help="patients in the synthetic release")
    mammo.add_argument("--seed", type=int, default=7, help="seed for the synthetic data and training")
    mammo.add_argument("--verbose", action="store_true", help="show every log line, not just progress")
    mammo.set_defaults(func=cmd_mammo_demo)

    segment = verbs.add_parser("segment-demo", help="the U-Net segmentation pipeline variant (BUSI masks)",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    segment.add_argument("--task", help="task preset with masks (none: busi)")
    segment.add_argument("--data-root", help="class folders with <image>_mask.png beside each image "
                                             "(none: synthetic BUSI under the workdir)")
    segment.add_argument("--layout", help="auto or class_folders (default auto)")
    segment.add_argument("--workdir", help="where data, pipeline roots, metadata and served models go")
    segment.add_argument("--train-steps", type=int, help="training steps (none: from configs)")
    segment.add_argument("--seed", type=int, help="seed for the synthetic data and training")
    segment.add_argument("--blackbox", action="store_true",
                         help="train non-malignant masks as empty; classify by predicted lesion area")
    segment.add_argument("--verbose", action="store_true", help="show every log line, not just progress")
    segment.set_defaults(func=cmd_segment_demo)
