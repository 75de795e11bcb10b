"""The floors of docs/ARCHITECTURE.md hold: import-linter's contracts (pyproject.toml's
[tool.importlinter]) pass, and the project's import graph has no loop.

Both read the source only (grimp parses the files; nothing is imported), in about a
second.
"""
import os
import sys

import grimp
import pytest

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "components", "serving", "webapp")


def test_import_linter_contracts_are_kept(capsys):
    from importlinter.cli import lint_imports

    cwd = os.getcwd()
    os.chdir(PROJECT_DIR)  # import-linter reads ./pyproject.toml
    try:
        code = lint_imports(config_filename=os.path.join(PROJECT_DIR, "pyproject.toml"), no_cache=True,
                            no_logo=True)
    finally:
        os.chdir(cwd)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "4 kept, 0 broken" in report, report


def strongly_connected(graph: grimp.ImportGraph):
    """Tarjan's algorithm over the module graph: every group of modules that import
    each other in a loop (groups of one are not loops)."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]

    def visit(module):
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10000))
    try:
        for module in sorted(graph.modules):
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return groups


@pytest.fixture(scope="module")
def graph():
    sys.path.insert(0, PROJECT_DIR)
    try:
        return grimp.build_graph(*PACKAGES, cache_dir=None)
    finally:
        sys.path.remove(PROJECT_DIR)


def test_the_import_graph_has_no_loops(graph):
    """Function-level imports count too: a lazy import is still an edge of the loop."""
    loops = strongly_connected(graph)
    assert not loops, "import loops: " + "; ".join(" <-> ".join(group) for group in loops)


def test_the_loop_finder_finds_a_loop():
    """The check above can fail: a two-module loop is found."""
    planted = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        planted.add_module(name)
    planted.add_import(importer="a.x", imported="a.y")
    planted.add_import(importer="a.y", imported="a.x")
    planted.add_import(importer="a.z", imported="a.x")
    assert strongly_connected(planted) == [["a.x", "a.y"]]


def test_verbs_are_registered_by_import_not_by_name():
    """pipeline/cli.py imports its verb modules; none of them imports it back."""
    with open(os.path.join(PROJECT_DIR, "pipeline", "cli.py")) as handle:
        source = handle.read()
    assert "importlib" not in source
    graph = grimp.build_graph("pipeline", "components", "serving", "webapp", cache_dir=None)
    assert not graph.find_modules_that_directly_import("pipeline.cli")
