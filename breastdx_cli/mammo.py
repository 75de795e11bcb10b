"""The mammography variant's study settings at the command line: ``demo --full-size``.

`breastdx_cli/main.py` imports this module (no call-back into it) for `full_size_settings()`.
What a mammography run prints afterwards is pipeline/summary.py's, as for every variant.
"""

from __future__ import annotations

from typing import Any


def full_size_settings() -> dict[str, Any]:
    """The study's sizes and schedules (Shen et al. 2019) as PipelineConfig overrides."""
    from breastdx_core import contract
    from components.mammo import models

    return {
        "mammo_image_size": tuple(contract.CBIS_IMAGE_SIZE),
        "mammo_patch_size": contract.CBIS_PATCH_SIZE,
        "mammo_heatmap_stride": contract.CBIS_PATCH_SIZE // 4,
        "mammo_patch_schedule": models.format_schedule(models.PATCH_SCHEDULE),
        "mammo_whole_schedule": models.format_schedule(models.WHOLE_SCHEDULE),
    }
