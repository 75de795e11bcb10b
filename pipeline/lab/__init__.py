"""The model lab: backbone comparison, training diagnostics, tuning helpers and the
evaluation report of pushed models (GitHub issue 5).

`breastdx compare` and `breastdx report` (pipeline/lab/cli.py) are its entry points;
the Trainer module imports `pipeline.lab.diagnostics` for its training callback.
"""
