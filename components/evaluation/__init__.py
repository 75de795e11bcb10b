"""The evaluation of a trained model: statistics (NumPy), scoring (TensorFlow), plots
(matplotlib), the report (Jinja template). The EvaluationReport component
(components/evaluation_report.py) and `breastdx report` (lab) call it."""
