"""Workarounds for the frameworks this project runs on (TFX, KFP, Beam), one module each.

The index is docs/compat.md: for every workaround, here and in components/compat.py (those
that code on the components floor calls), what it patches, the upstream issue or commit,
the versions it applies to, the condition under which it is deleted, and the test that
fails when the upstream behaviour changes. Modules here:

- ``tfx_cli_kubeflow``: the ``tfx`` CLI's ``--engine kubeflow`` and ``vertex`` (a ``.pth`` line).
- ``kfp_shim``: TFX's container entrypoints under KFP 2's driver and launcher (a ``.pth``
  hook in the pipeline image; its docstring lists its fixes).
- ``dry_run`` and ``kfp_launcher``: a compiled package run here as KFP's driver and launcher
  would run it.
- ``example_gen_resources``: the resources TFX's step builder drops from the ExampleGen.

`write_pth` writes the ``.pth`` files of the two shims.
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
