"""Every repository path a docstring, comment or document names exists.

Paths in prose go stale when files move; this test reads the docstrings and comments of
every Python file in the repository, the Markdown under docs/ (links and code spans) and the
README's links, and fails with the file, line and path of each one that names nothing. A
path counts when it starts at a top-level entry of the repository (``components/...``,
``pipeline/pipeline.py``, ``docs/...``) or is a dotted module path of a first-party package
(``breastdx_core.configs``); placeholders (``<version>``), globs and brace lists are skipped.
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

SLASH_PATH = re.compile(
    r"(?<![\w./<-])((?:\.github|\.ci|[A-Za-z_][\w-]*)(?:/[\w.-]+)+/?)(?![\w/<{*])"
)
DOTTED = re.compile(r"(?<![\w./])([a-z_][a-z0-9_]*(?:\.[A-Za-z_]\w*)+)(?![\w(/])")
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


def _exists_slash(candidate):
    path = candidate.rstrip("/.")
    if "/" not in path or path.split("/")[0] not in TOP:
        return True  # a bare name, a URL part, an output folder or another package's path
    if os.path.exists(os.path.join(ROOT, path)):
        return True
    # `folder/module.attribute`: a module named by its path, then an attribute of it
    head, _, last = path.rpartition("/")
    return "." in last and os.path.isfile(os.path.join(ROOT, head, last.split(".")[0] + ".py"))


def _exists_dotted(candidate):
    parts = candidate.split(".")
    if parts[0] not in PACKAGES or len(parts) < 2:
        return True
    here = os.path.join(ROOT, parts[0])
    for part in parts[1:]:
        if os.path.isdir(os.path.join(here, part)):
            here = os.path.join(here, part)
            continue
        if os.path.isfile(os.path.join(here, part + ".py")):
            return True  # a module; what follows is an attribute
        init = os.path.join(here, "__init__.py") if os.path.isdir(here) else here
        return (
            os.path.isfile(init)
            and re.search(rf"\b{re.escape(part)}\b", open(init).read()) is not None
        )
    return True


def _candidates(text):
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
