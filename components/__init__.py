"""Custom TFX components and the module files TFX's Transform and Trainer load.

``components.EvaluationReport`` is the type name of the evaluation report's artifact
(components/evaluation_report.py), which TFX's KFP v2 entrypoint imports as a class path:
this package answers it (components/compat.py `artifact_types`; docs/compat.md).
"""

from components import compat as _compat

__getattr__ = _compat.artifact_types(
    __name__, {"EvaluationReport": "components.evaluation_report.EvaluationReportArtifact"}
)
