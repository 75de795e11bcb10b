"""The evaluation report's files: JSON and a self-contained HTML page (Jinja template
``templates/evaluation_report.html.j2``, figures from `plots`).

The EvaluationReport component writes them into its artifact (the Pusher publishes them
beside the model); `breastdx report` writes them for a pushed version.
"""

from __future__ import annotations

import os
from typing import Any

import jinja2

from breastdx_core import model_card
from components import folders
from components.evaluation import plots

REPORT_JSON = "evaluation_report.json"
REPORT_HTML = "evaluation_report.html"
TEMPLATE = "evaluation_report.html.j2"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
    autoescape=True,
    undefined=jinja2.ChainableUndefined,
)


def render_html(report: dict[str, Any], images: dict[str, str]) -> str:
    """The page for ``report`` (a JSON-ready dict, NaN as None) with base64 PNG ``images``."""
    return _ENV.get_template(TEMPLATE).render(report=model_card.finite(report), images=images)


def write(directory: str, report: dict[str, Any]) -> dict[str, str]:
    """Writes ``evaluation_report.{json,html}`` into ``directory`` (local or gs://)."""
    import tensorflow as tf

    paths = {
        "json": os.path.join(directory, REPORT_JSON),
        "html": os.path.join(directory, REPORT_HTML),
    }
    folders.make_folder(directory)
    with tf.io.gfile.GFile(paths["json"], "w") as handle:
        handle.write(model_card.dumps(report))
    with tf.io.gfile.GFile(paths["html"], "w") as handle:
        handle.write(render_html(report, plots.figures(report)))
    return paths
