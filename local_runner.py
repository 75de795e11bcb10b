"""Runs the pipeline here: LocalDagRunner, Beam's DirectRunner, SQLite metadata.

`python local_runner.py` (or `breastdx demo`, which `make demo` calls; its `cmd_demo` calls
`check_data`, then `run`) checks the image root, then runs `create_pipeline()`. TensorFlow and
TFX load in `run`, after the check: a wrong data root is reported at once. Settings come from
`breastdx_core.configs.load()` (BREASTDX_* environment variables); this file only chooses the
orchestrator, the metadata store and the Beam arguments. A re-run with unchanged inputs is
served from TFX's cache; ImageExampleGen's driver fingerprints the image tree, so a changed, added
or removed image is ingested again.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault(
    "TF_USE_LEGACY_KERAS", "1"
)  # entry point: Keras 2 everywhere (docs/decisions/0001-keras2.md)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from breastdx_core import configs  # noqa: E402
from pipeline import preflight  # noqa: E402

log = logging.getLogger("breastdx")


def check_data(config: configs.PipelineConfig) -> int:
    """Checks ``config.data_root`` as the pipeline will read it and logs what it found;
    loads no TensorFlow for a local root.

    Returns:
        The number of image files (mammograms of a CBIS-DDSM release) to ingest.

    Raises:
        preflight.PreflightError: the image root cannot feed the pipeline.
    """
    if config.variant == "mammo":  # a CBIS-DDSM release, not an image tree
        from components.mammo import cbis

        try:
            images, abnormalities = cbis.preflight(config.data_root)
        except cbis.CbisError as err:
            raise preflight.PreflightError(str(err)) from None
        log.info(
            "data: %s (CBIS-DDSM release): %d mammograms, %d abnormalities",
            config.data_root,
            images,
            abnormalities,
        )
        return images
    found = preflight.check(config.data_root, config.task_spec, config.layout)
    log.info(
        "data: %s (%s layout): %d image files to ingest",
        config.data_root,
        found.layout,
        found.candidates,
    )
    return found.candidates


def run(config: configs.PipelineConfig, checked: bool = False) -> None:
    """Checks the data (`check_data`, unless the caller has just ``checked`` it), then runs
    the whole pipeline to a pushed model.

    Raises:
        preflight.PreflightError: the image root cannot feed the pipeline.
    """
    if not checked:
        check_data(config)
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
    pipeline = create_pipeline(
        config,
        beam_pipeline_args=config.beam_pipeline_args(),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(configs.load())
    except (preflight.PreflightError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
