"""Workarounds for the frameworks this project runs on, one module each, each with its
way out.

Every entry says what it patches, the upstream issue or commit, the versions it applies
to and the condition under which it is deleted. A test for each fails when the upstream
behaviour it works around changes (so the workaround is looked at again, not left on).

- ``tfx_cli_kubeflow``: the ``tfx`` CLI's ``--engine kubeflow`` (and ``vertex``).
  Patches: the modules ``tfx.tools.cli.handler.kubeflow_handler`` and
  ``vertex_handler`` are answered with breastdx_cli/tfx_handler.py (a KFP 2 handler on
  TFX's ``base_handler``, with this project's sign-in, engines and one-line errors).
  Upstream: TFX commit e46d9e311 (2024-10-02, "Deprecate KFP v1 SDK support") deleted
  ``tfx.orchestration.kubeflow.kubeflow_dag_runner`` and left ``kubeflow_handler.py``
  importing it and speaking the KFP v1 client; ``handler_factory.py`` hard-codes the
  engines (no plug-in hook). Applies to: TFX 1.16.0 (pinned here) through 1.17.3 and
  TFX's head as read in 2026-12, with kfp 2.5. Delete when: TFX's own kubeflow handler
  imports and speaks kfp 2 (tests/test_tfx_cli_kubeflow.py's upstream test then fails),
  or the handler factory takes a handler by entry point. Installed by a ``.pth`` line
  (``python -m pipeline.compat.tfx_cli_kubeflow --install``: `make venv`, the pipeline
  image).
- (pipeline/compat/kfp_shim.py, older than this package, holds the fixes of TFX's container
  entrypoints under KFP 2's driver and launcher; its own docstring lists them.)
"""


def write_pth(name: str, line: str, site_dir: str | None = None) -> str:
    """Writes the ``.pth`` file ``name`` holding ``line`` into ``site_dir`` (default: the
    environment's site-packages), so every Python process there runs it; returns its path.
    The shims' ``--install`` (the image build, `make venv`) call this."""
    import os
    import site

    path = os.path.join(site_dir or site.getsitepackages()[0], name)
    with open(path, "w") as handle:
        handle.write(line)
    return path
