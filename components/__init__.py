"""Custom TFX components and the module files TFX's Transform and Trainer load."""


def __getattr__(name: str):
    # The KFP v2 container entrypoint imports a custom artifact class by its type name,
    # "<module>.<Class>" (components/evaluation_report.py: "components.EvaluationReport");
    # loaded lazily so that importing the package stays light.
    if name == "EvaluationReport":
        from components.evaluation_report import EvaluationReportArtifact

        return EvaluationReportArtifact
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
