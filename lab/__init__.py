"""The model lab: backbone comparison (`compare.py`), patient-level cross-validation
(`cv.py`) and the evaluation report of pushed models (`evaluation_report.py`).

`breastdx compare` and `breastdx report` (breastdx_cli/lab.py) and `breastdx cv` (its parser
in cv.py, registered by breastdx_cli/main.py) are its entry points. The training diagnostics
it reports live with the Trainer (`components/trainer/diagnostics.py`), which the Trainer
module imports.
"""
