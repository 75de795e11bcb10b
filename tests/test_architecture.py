"""The floors of docs/ARCHITECTURE.md hold: import-linter's contracts (pyproject.toml's
[tool.importlinter]) pass, and the project's import graph has no loop.

Both read the source only (grimp parses the files; nothing is imported). They run in a
child process: grimp's parser threads crashed a pytest process that had already loaded
TensorFlow (another test module's import).
"""

import json
import os
import subprocess
import sys

import pytest

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "components", "serving", "webapp", "breastdx_core", "breastdx_cli", "lab")
_EDGES = """
import json, sys
import grimp
graph = grimp.build_graph(*sys.argv[1:], cache_dir=None)
print(json.dumps({m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}))
"""


def test_import_linter_contracts_are_kept():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command())",
            "--config",
            os.path.join(PROJECT_DIR, "pyproject.toml"),
            "--no-cache",
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout, done.stdout


def strongly_connected(edges):
    """Tarjan's algorithm over {module: [modules it imports]}: every group of modules
    that import each other in a loop (groups of one are not loops)."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]

    def visit(module):
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in edges.get(module, ()):
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
        for module in sorted(edges):
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return groups


@pytest.fixture(scope="module")
def edges():
    done = subprocess.run(
        [sys.executable, "-c", _EDGES, *PACKAGES],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": PROJECT_DIR},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_import_graph_has_no_loops(edges):
    """Function-level imports count too: a lazy import is still an edge of the loop."""
    assert "webapp.clients" in edges and "breastdx_cli.main" in edges
    loops = strongly_connected(edges)
    assert not loops, "import loops: " + "; ".join(" <-> ".join(group) for group in loops)


def test_the_loop_finder_finds_a_loop():
    """The check above can fail: a two-module loop is found."""
    planted = {"a.x": ["a.y"], "a.y": ["a.x"], "a.z": ["a.x"]}
    assert strongly_connected(planted) == [["a.x", "a.y"]]


def test_verbs_are_registered_by_import_not_by_name(edges):
    """breastdx_cli/main.py imports its verb modules; none of them imports it back."""
    with open(os.path.join(PROJECT_DIR, "breastdx_cli", "main.py")) as handle:
        assert "importlib" not in handle.read()
    assert {"breastdx_cli.mammo", "breastdx_cli.lab", "serving.cli", "webapp.cli"} <= set(
        edges["breastdx_cli.main"]
    )
    assert not [module for module, imported in edges.items() if "breastdx_cli.main" in imported]
