"""Makes TFX's CLI use this project's handler for ``--engine kubeflow`` and ``vertex``.

Why (index entry: docs/compat.md): TFX commit e46d9e311 (2024-10-02, "Deprecate KFP v1 SDK
support") deleted ``tfx.orchestration.kubeflow.kubeflow_dag_runner`` and left
``tfx/tools/cli/handler/kubeflow_handler.py`` importing it and speaking the KFP v1 client,
and ``handler_factory.py`` imports its handlers by fixed module names (no plug-in hook).
Applies to TFX 1.16.0 through 1.17.3 and TFX's head as read in 2026-12, with kfp 2.5.
Delete when TFX's own kubeflow handler imports and speaks kfp 2 (the upstream test of
tests/test_tfx_cli_kubeflow.py then fails), or the handler factory takes a handler by
entry point. This meta-path finder answers those two module names with breastdx_cli/tfx_handler.py,
which defines ``KubeflowHandler`` and ``VertexHandler`` on TFX's ``base_handler``.

Who calls it: a ``.pth`` file (:func:`install_pth`, run by `make venv` and
deploy/pipeline.Dockerfile) puts a tiny finder on ``sys.meta_path`` in every Python
process of the environment; it imports this module only when TFX's CLI imports one of
the two handlers, and does nothing where this module is absent (another checkout sharing
the environment). :func:`install` does the same in a running process (the tests).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

PTH_NAME = "breastdx_tfx_cli_kubeflow.pth"
HANDLER_MODULE = "breastdx_cli.tfx_handler"
# TFX's module names and the project's module that answers them (it is named, not
# imported, here: the handler sits in the console layer, above this package).
REPLACED = {
    "tfx.tools.cli.handler.kubeflow_handler": HANDLER_MODULE,
    "tfx.tools.cli.handler.vertex_handler": HANDLER_MODULE,
}


class _AliasLoader(importlib.abc.Loader):
    """Makes the replaced name refer to the project's handler module."""

    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):  # the target module ran when it was imported
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        replacement = REPLACED.get(fullname)
        if replacement is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(replacement))


def install() -> None:
    """Puts the finder first on ``sys.meta_path`` (once); imports nothing."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def pth_line() -> str:
    """The ``.pth`` line: a finder that only knows TFX's two handler names and imports this
    module when TFX asks for one of them. Nothing is imported at start-up (not even this
    package), and where this module is absent (another checkout sharing the environment)
    the handlers stay TFX's own."""
    hook = (
        "class _BreastdxTfxCliHook:\n"
        f"    names = {tuple(REPLACED)!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name not in self.names:\n"
        "            return None\n"
        "        try:\n"
        "            import pipeline.compat.tfx_cli_kubeflow as m\n"
        "        except ImportError:\n"
        "            return None\n"
        "        return m._Finder().find_spec(name, path, target)\n"
        "sys.meta_path.insert(0, _BreastdxTfxCliHook())\n"
    )
    # One line, as site.py wants it; the code holds no double quote.
    return 'import sys; exec("' + hook.replace("\n", "\\n") + '")\n'


def install_pth(site_dir: str | None = None) -> str:
    """Writes the ``.pth`` file into ``site_dir`` (default: the environment's
    site-packages). Returns its path."""
    from pipeline.compat import write_pth

    return write_pth(PTH_NAME, pth_line(), site_dir)


if __name__ == "__main__":
    if sys.argv[1:] != ["--install"]:
        print("usage: python -m pipeline.compat.tfx_cli_kubeflow --install", file=sys.stderr)
        sys.exit(2)
    print(install_pth())
