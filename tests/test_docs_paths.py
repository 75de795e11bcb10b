"""Every repository path a docstring, comment or document names exists.

Paths in prose go stale when files move; this test reads the docstrings and comments of
every Python file in the repository, the Markdown under docs/ (links and code spans) and the
README's links, and fails with the file, line and path of each one that names nothing. A
path counts when it starts at a top-level entry of the repository (``components/...``,
``pipeline/pipeline.py``, ``docs/...``) or is a dotted module path of a first-party package
(``breastdx_core.configs``, or a top-level module: ``kubeflow_runner``); placeholders
(``<version>``), globs and brace lists are skipped. A name after a module
(``pipeline.pipeline.create_pipeline``, ``components/compat.partition``, a test name after
its file's path and ``::``) must be defined or imported in that file, so a function that
moved leaves no stale name behind.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {
    ".git",
    ".venv",
    ".venv-tools",
    ".venv-locust",
    ".cache",
    "workdir",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "build",
}
TOP = {name for name in os.listdir(ROOT) if not name.startswith(".") and name not in SKIP_DIRS}
TOP |= {".github", ".ci"}
PACKAGES = {name for name in TOP if os.path.isfile(os.path.join(ROOT, name, "__init__.py"))}
MODULES = {name[:-3] for name in TOP if name.endswith(".py")}  # kubeflow_runner, local_runner

SLASH_PATH = re.compile(
    r"(?<![\w./<-])((?:\.github|\.ci|[A-Za-z_][\w-]*)(?:/[\w.-]+)+/?)(?![\w/<{*])"
)
DOTTED = re.compile(r"(?<![\w./])([a-z_][a-z0-9_]*(?:\.[A-Za-z_]\w*)+)(?![\w(/])")
TEST_ID = re.compile(r"(?<![\w./-])((?:[\w.-]+/)+[\w.-]+\.py)::(\w+)")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
CODE_SPAN = re.compile(r"`([^`]+)`")


def _source_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv")]
        for name in files:
            yield os.path.join(folder, name)


def _python_prose(path):
    """(line, text) of each docstring and comment of one Python file."""
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                yield node.body[0].lineno, doc


def _defines(module_file, name):
    """Whether the Python file defines ``name`` (def, class, assignment) or imports it."""
    with open(module_file, encoding="utf-8") as handle:
        source = handle.read()
    name = re.escape(name)
    return (
        re.search(
            rf"^\s*(?:(?:async\s+)?def|class)\s+{name}\b|^\s*{name}\s*[:=]"
            rf"|^\s*(?:from\s+\S+\s+)?import\b[^#\n]*\b{name}\b",
            source,
            re.M,
        )
        is not None
    )


def _exists_slash(candidate):
    path = candidate.rstrip("/.")
    if "/" not in path or path.split("/")[0] not in TOP:
        return True  # a bare name, a URL part, an output folder or another package's path
    if os.path.exists(os.path.join(ROOT, path)):
        return True
    # `folder/module.attribute`: a module named by its path, then an attribute of it
    head, _, last = path.rpartition("/")
    module, _, attribute = last.partition(".")
    module_file = os.path.join(ROOT, head, module + ".py")
    return (
        bool(attribute)
        and os.path.isfile(module_file)
        and _defines(module_file, attribute.split(".")[0])
    )


def _exists_test(candidate):
    path, _, name = candidate.partition("::")
    module_file = os.path.join(ROOT, path)
    return not os.path.isfile(module_file) or _defines(module_file, name)


def _exists_dotted(candidate):
    parts = candidate.split(".")
    if len(parts) < 2 or os.path.exists(os.path.join(ROOT, candidate)):
        return True  # a bare name, or a file (`kubeflow_runner.py`)
    if parts[0] in MODULES:
        return _defines(os.path.join(ROOT, parts[0] + ".py"), parts[1])
    if parts[0] not in PACKAGES:
        return True
    here = os.path.join(ROOT, parts[0])
    for index, part in enumerate(parts[1:], 2):
        if os.path.isdir(os.path.join(here, part)):
            here = os.path.join(here, part)
            continue
        module_file = os.path.join(here, part + ".py")
        if os.path.isfile(module_file):  # a module; what follows is an attribute of it
            return index == len(parts) or _defines(module_file, parts[index])
        init = os.path.join(here, "__init__.py") if os.path.isdir(here) else here
        return (
            os.path.isfile(init)
            and re.search(rf"\b{re.escape(part)}\b", open(init).read()) is not None
        )
    return True


def _candidates(text):
    for match in TEST_ID.finditer(text):
        yield f"{match.group(1)}::{match.group(2)}", _exists_test
    for match in SLASH_PATH.finditer(text):
        value = match.group(1)
        if (
            not any(mark in value for mark in ("<", ">", "{", "}", "*", "$", "..."))
            and "://" not in text[max(0, match.start() - 8) : match.end()]
        ):
            yield value, _exists_slash
    for match in DOTTED.finditer(text):
        yield match.group(1), _exists_dotted


_ALL_FILES = list(_source_files())


def _stale():
    found = []
    for path in _ALL_FILES:
        rel = os.path.relpath(path, ROOT)
        if path.endswith(".py"):
            for line, text in _python_prose(path):
                for value, exists in _candidates(text):
                    if not exists(value):
                        found.append(f"{rel}:{line}: {value}")
        elif path.endswith(".md") and (rel.startswith("docs" + os.sep) or rel == "README.md"):
            folder = os.path.dirname(path)
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    for link in MD_LINK.findall(line):
                        if "://" not in link and not link.startswith("mailto:"):
                            if not os.path.exists(os.path.normpath(os.path.join(folder, link))):
                                found.append(f"{rel}:{number}: link {link}")
                    if rel == "README.md":
                        continue
                    for span in CODE_SPAN.findall(line):
                        for value, exists in _candidates(span):
                            if not exists(value):
                                found.append(f"{rel}:{number}: {value}")
    return found


def test_every_path_named_in_prose_exists():
    stale = _stale()
    assert not stale, "paths that name nothing:\n" + "\n".join(stale)
