"""`breastdx report`: the evaluation report of a pushed version, written again on demand.

The pipeline's EvaluationReport component (components/evaluation_report.py) writes the
report and the card's evaluation fields before every push; this module is for versions
pushed earlier or scored on another run's splits. It writes
``<version>/assets.extra/evaluation_report.{json,html}`` and leaves the published card
alone (a card is written once, before the push). The numbers come from
`components.evaluation.statistics` (re-exported here for the lab and its tests), the
scores from `components.evaluation.scoring.score_split`.
"""

from __future__ import annotations

import glob
import logging
import os

from breastdx_core import model_card
from components.evaluation import report as report_files
from components.evaluation.statistics import (  # noqa: F401  (re-exported for the lab and its tests)
    CALIBRATION_BINS,
    PATIENT_AGGREGATION,
    SYNTHETIC_NOTE,
    THRESHOLD_METRICS,
    build_report,
    calibration,
    metrics_with_ci,
    patient_level,
    pr_curve,
    roc_curve,
    sample_warnings,
    threshold_for_sensitivity,
    threshold_for_specificity,
)

log = logging.getLogger(__name__)

REPORT_DIR = "assets.extra"
REPORT_JSON = f"{REPORT_DIR}/{report_files.REPORT_JSON}"
REPORT_HTML = f"{REPORT_DIR}/{report_files.REPORT_HTML}"


def write_report(version_dir: str, report: dict) -> dict[str, str]:
    """Writes the JSON and HTML into ``<version_dir>/assets.extra/``."""
    return report_files.write(os.path.join(version_dir, REPORT_DIR), report)


def pushed_versions(config) -> list[str]:
    """Version folders under ``<serving_root>/<model_name>/``, oldest first."""
    base = os.path.join(config.serving_root, config.model_name)
    return sorted(
        (d for d in glob.glob(os.path.join(base, "*")) if os.path.basename(d).isdigit()),
        key=lambda d: int(os.path.basename(d)),
    )


def report_for_version(config, version_dir: str, examples_uri: str) -> dict[str, str]:
    """Scores ``version_dir`` on the test and eval splits of ``examples_uri`` and writes its
    report (see the module docstring). Returns the written paths."""
    from components.evaluation.scoring import score_split
    from pipeline import summary

    task = config.task_spec
    card = model_card.load(model_card.path_in(version_dir), missing_ok=True)
    card.setdefault("version", int(os.path.basename(version_dir.rstrip("/"))))
    card.setdefault("model_name", config.model_name)
    if task.num_classes != 2:
        log.info(
            "%s: %d classes; the report scores %s vs the rest",
            version_dir,
            task.num_classes,
            task.positive_class,
        )
    test = score_split(version_dir, examples_uri, "test")
    choose = score_split(version_dir, examples_uri, "eval")
    synthetic = os.path.abspath(config.data_root).startswith(os.path.abspath(config.workdir))
    splits = summary.split_counts(
        examples_uri, [name for name, _ in config.data.split_buckets], task.num_classes
    )
    report = build_report(
        test.binary(task.positive_index),
        choose.binary(task.positive_index),
        target_sensitivity=config.evaluation.target_sensitivity,
        resamples=config.evaluation.bootstrap_resamples,
        seed=config.seed,
        card=card,
        splits=splits,
        synthetic=synthetic,
        class_names=(
            [n for n in task.class_names if n != task.positive_class][0]
            if task.num_classes == 2
            else f"not {task.positive_class}",
            task.positive_class,
        ),
        operating_rule=config.evaluation.operating_rule,
        test_xy=test.xy(),
        choose_xy=choose.xy(),
    )
    report["decision_rule"] = card.get("decision_rule")
    report["small_sample_warnings"] = sample_warnings(splits, task.class_names)
    report["examples_uri"] = examples_uri
    return write_report(version_dir, report)
