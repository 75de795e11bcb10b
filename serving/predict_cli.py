"""``breastdx predict IMAGE...``: classify files from the command line.

``pipeline.cli`` calls :func:`add_predict_parser` and :func:`run_predict`. With
``--server URL --model NAME`` the files go to a model server over TF Serving's REST API
(``webapp.clients.RestClient``, no TensorFlow in this process); with ``--saved-model DIR``
the SavedModel's ``serving_default`` runs in-process. Either way the bytes are sent as
read: the model's own graph decodes and resizes them.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, TextIO

from pipeline import contract

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8501"
DEFAULT_MODEL = "breastdx-idc"


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``predict`` verb to ``pipeline.cli``'s subparsers."""
    parser = subparsers.add_parser("predict", help="classify image files (research use only)",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--server", default=DEFAULT_SERVER, help="model server REST URL")
    where.add_argument("--saved-model", default=None, help="a SavedModel folder to run in-process instead")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="served model name (with --server)")
    parser.add_argument("--version", default=None, help="served version (with --server); default the newest")
    parser.set_defaults(func=run_predict)
    return parser


def _saved_model_rows(path: str, images: List[bytes]) -> List[dict]:
    import tensorflow as tf

    function = tf.saved_model.load(path).signatures[contract.SIGNATURE_BYTES]
    outputs = function(**{contract.SERVING_INPUT_BYTES: tf.constant(images)})
    class_names = outputs[contract.OUTPUT_CLASS_NAME].numpy()
    probabilities = outputs[contract.OUTPUT_PROBABILITIES].numpy()
    indices = outputs[contract.OUTPUT_CLASS_INDEX].numpy()
    return [{"class_name": name.decode("utf-8"), "probability": float(p[i])}
            for name, p, i in zip(class_names, probabilities, indices)]


def run_predict(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Prints ``FILE: CLASS p=PROBABILITY`` per image and the research-only line.

    Returns:
        0 on success, 2 for an unreadable file, 1 when the model could not answer.
    """
    out = out or sys.stdout
    images = []
    for path in args.images:
        try:
            with open(path, "rb") as handle:
                images.append(handle.read())
        except OSError as err:
            log.error("cannot read %s: %s", path, err)
            return 2
    if args.saved_model:
        if not os.path.isfile(os.path.join(args.saved_model, "saved_model.pb")):
            log.error("--saved-model %s has no saved_model.pb", args.saved_model)
            return 2
        try:
            rows = _saved_model_rows(args.saved_model, images)
        except Exception as err:  # TensorFlow's errors for an undecodable file
            log.error("the SavedModel could not classify the files: %s", str(err).strip().splitlines()[-1])
            return 1
        source = args.saved_model
    else:
        from webapp.clients import PredictionError, RestClient

        client = RestClient(args.server, args.model)
        try:
            predictions = client.predict(images, version=args.version, explain=False)
        except PredictionError as err:
            log.error("%s", err.message)
            return 1
        rows = [{"class_name": p.class_name, "probability": p.probability} for p in predictions]
        source = f"{args.model} version {predictions[0].model_version} at {args.server}"
    for path, row in zip(args.images, rows):
        print(f"{path}: {row['class_name']} p={row['probability']:.4f}", file=out)
    print(f"model: {source}", file=out)
    print(contract.RESEARCH_ONLY, file=out)
    return 0
