"""The model lab: backbone comparison, training diagnostics, tuning helpers and the
evaluation report of pushed models (GitHub issue 5).

`breastdx compare` and `breastdx report` (breastdx_cli/lab.py) are its entry points;
the Trainer module imports `components.trainer.diagnostics` for its training callback.
"""
