"""The TFX floor's wiring: `create_pipeline` and its variants (pipeline.py), the console
and progress output of a run, the dry run of a compiled spec, the KFP shim, the data
preflight, the run summary and the synthetic data set. Settings and the data contract
are on the ground floor (breastdx_core/)."""
