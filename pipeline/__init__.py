"""The pipeline's configuration, data contract, wiring and command line."""
