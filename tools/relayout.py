#!/usr/bin/env python3
"""Moves the project's modules onto the floors of docs/ARCHITECTURE.md and rewrites every
reference to them (issue 9, "floors you can see in the folder names").

Run from the repository root, once, on a tree where everyone has committed:

    python3 tools/relayout.py --check   # what it would move and which files it would edit
    python3 tools/relayout.py           # git mv + rewrite; prints a summary

Stdlib only. Idempotent: on a tree it has already moved, it moves and changes nothing.
A module in MOVES that is missing is skipped with a warning (the tree may have changed
since the table was written); a module that appeared since is left where it is.

The floors after the move (each imports only what is below it):

    breastdx_cli/   the `breastdx` console script's verbs              applications
    lab/  webapp/   the model lab; the Flask web app (never TensorFlow)
    serving/        the TF-Serving-compatible model server
    pipeline/       create_pipeline + variants, console, dry run, KFP shim  TFX floor
    local_runner.py kubeflow_runner.py
    components/     custom components, module files, their libraries (evaluation/, mammo/)
    breastdx_core/  data contract, settings (one loader), model card +      ground floor
                    schema, metrics, decision rule, magic-byte check: no TensorFlow

What it rewrites, in every tracked (or untracked, not ignored) text file:
  * Python imports: ``from pipeline import contract, pipeline`` is split by destination,
    ``from pipeline.mammo import cli as mammo_cli`` keeps its local name (an ``as`` is
    added when the module's own name changes), ``import pipeline.contract as c``;
  * dotted paths anywhere (attribute paths, mock.patch targets, ``-m`` module names,
    importlib strings, pyproject's console script, docs): ``pipeline.contract`` ->
    ``breastdx_core.contract``, word-bounded and longest match first;
  * file paths (``pipeline/contract.py``, ``pipeline/lab/``, ``pipeline/schemas/...``,
    ``os.path.join(..., "pipeline", "cli.py")``);
  * lists of the top-level packages (``("pipeline", "components", "serving", "webapp")``,
    pyproject's packages.find include, Dockerfile COPYs, .dockerignore and workflow path
    filters) gain the new ones;
  * pyproject.toml: package-data follows the data files, ``[tool.importlinter]`` is
    replaced by the contracts for the new layout;
  * the web image copies ``breastdx_core/`` instead of single files;
  * README.md's "Layout" section and docs/ARCHITECTURE.md's picture, contracts and
    target-layout sections are replaced by the layout after the move;
  * settings: breastdx_core/loader.py (+ tests/test_settings_loader.py) is written and
    configs.py's and cluster_configs.py's `_coerce`/`load` call it (SETTINGS_FOLD; only
    where those functions are still the ones the table was written against).
Paths computed from ``__file__`` keep resolving: every module that computes one stays at
its depth (checked: the tool warns otherwise) and the schemas and templates move with the
modules that read them.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# --------------------------------------------------------------------------------------
# The table. Old module (or package) -> new. Packages move with every file below them;
# a package moved onto an existing one merges into it (its __init__.py is dropped).
MOVES: List[Tuple[str, str]] = [
    # ground floor: TF-free
    ("pipeline.contract", "breastdx_core.contract"),
    ("pipeline.configs", "breastdx_core.configs"),
    ("pipeline.cluster_configs", "breastdx_core.cluster_configs"),
    ("pipeline.model_card", "breastdx_core.model_card"),
    ("pipeline.metrics", "breastdx_core.metrics"),
    ("pipeline.decision", "breastdx_core.decision"),
    ("pipeline.pretrained", "breastdx_core.pretrained"),
    ("components.image_ingest.image_files", "breastdx_core.image_files"),
    # TFX floor: libraries the module files and components import
    ("pipeline.mammo.cbis", "components.mammo.cbis"),
    ("pipeline.mammo.images", "components.mammo.images"),
    ("pipeline.mammo.patches", "components.mammo.patches"),
    ("pipeline.mammo.models", "components.mammo.models"),
    ("pipeline.mammo.heatmap", "components.mammo.heatmap"),
    ("pipeline.lab.diagnostics", "components.trainer.diagnostics"),
    ("pipeline.evaluation", "components.evaluation"),
    # applications: the console script's verbs, one module per verb group
    ("pipeline.cli", "breastdx_cli.main"),
    ("pipeline.kfp_cli", "breastdx_cli.kfp"),
    ("pipeline.kfp_auth", "breastdx_cli.kfp_auth"),
    ("pipeline.mammo.cli", "breastdx_cli.mammo"),
    ("pipeline.lab.cli", "breastdx_cli.lab"),
    ("components.pretrained.cli", "breastdx_cli.weights"),
    ("serving.predict_cli", "breastdx_cli.predict"),
    # applications: the model lab
    ("pipeline.lab", "lab"),
    # what is left of pipeline/mammo/ (its __init__.py) merges into components/mammo/
    ("pipeline.mammo", "components.mammo"),
]
# Data folders that move with the modules reading them through __file__.
DATA_MOVES: List[Tuple[str, str]] = [
    ("pipeline/schemas", "breastdx_core/schemas"),  # configs.SCHEMA_DIR, model_card.SCHEMA_PATH
]
OLD_TOPS = ("pipeline", "components", "serving", "webapp")
NEW_TOPS = ("breastdx_core", "breastdx_cli", "lab")
NEW_FILES: Dict[str, str] = {
    "breastdx_core/__init__.py": (
        '"""The ground floor: the data contract, every setting, the model card and its schema,\n'
        'metrics, the decision rule and the magic-byte check. No TensorFlow, TFX or Beam\n'
        '(import-linter\'s `ground-no-tensorflow` contract): the web app, the model server, the\n'
        'components and the console verbs all import it, and the web image copies it whole."""\n'),
    "breastdx_cli/__init__.py": (
        '"""The `breastdx` console script (pyproject.toml: `breastdx_cli.main:main`): one module\n'
        'per verb group (`main`: data, demo, summary and the list of every verb; `kfp` with\n'
        '`kfp_auth`: pipeline and run verbs on Kubeflow / Vertex AI; `predict`; `lab`: compare,\n'
        'report; `mammo`; `weights`). `serve` and `web` stay with their applications\n'
        '(serving/cli.py, webapp/cli.py), which their images run without this package.\n'
        'The top floor: nothing in the project imports it."""\n'),
}
# Whole-file docstrings replaced after the move (only when the file still holds `old`).
DOCSTRINGS: Dict[str, Tuple[str, str]] = {
    "pipeline/__init__.py": (
        '"""The pipeline\'s configuration, data contract, wiring and command line."""\n',
        '"""The TFX floor\'s wiring: `create_pipeline` and its variants (pipeline.py), the console\n'
        'and progress output of a run, the dry run of a compiled spec, the KFP shim, the data\n'
        'preflight, the run summary and the synthetic data set. Settings and the data contract\n'
        'are on the ground floor (breastdx_core/)."""\n'),
}
SKIP_FILES = {"tools/relayout.py", "constraints.txt"}
TEXT_SUFFIXES = (".py", ".md", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".ini", ".sh", ".json",
                 ".dockerignore", "Dockerfile", "Makefile", ".j2", ".html", ".pbtxt", ".in")
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# --------------------------------------------------------------------------------------
# The import-linter contracts after the move (replace pyproject.toml's [tool.importlinter]).
TF_STACK = ["tensorflow", "tf_keras", "keras", "tfx", "tfx_bsl", "tensorflow_transform",
            "tensorflow_model_analysis", "tensorflow_data_validation", "apache_beam"]


def _toml_list(items: Sequence[str], indent: str = "                     ") -> str:
    out, line = [], ""
    for item in items:
        piece = f'"{item}", '
        if len(indent) + len(line) + len(piece) > 100:
            out.append(line.rstrip())
            line = ""
        line += piece
    out.append(line.rstrip().rstrip(","))
    return ("\n" + indent).join(out)


IMPORTLINTER_BLOCK = f'''# The floors of docs/ARCHITECTURE.md, checked by import-linter (`lint-imports`;
# tests/test_architecture.py runs it in `make test`). An ignored import needs a line in
# docs/ARCHITECTURE.md ("Exceptions"); import-linter fails when one no longer matches.
[tool.importlinter]
root_packages = ["breastdx_core", "components", "pipeline", "serving", "lab", "webapp", "breastdx_cli"]
include_external_packages = true

[[tool.importlinter.contracts]]
id = "layers"
name = "Console verbs over the applications over the pipeline over the components over the TF-free ground floor"
type = "layers"
layers = [
    "breastdx_cli",
    "lab | webapp",
    "serving",
    "pipeline",
    "components",
    "breastdx_core",
]
ignore_imports = [
    # CBIS-DDSM's preflight raises the pipeline's PreflightError (a lazy import);
    # goes away when the check moves to pipeline/preflight.py.
    "components.mammo.cbis -> pipeline.preflight",
]

[[tool.importlinter.contracts]]
id = "ground-no-tensorflow"
name = "The ground floor (breastdx_core) imports no TensorFlow, TFX or Beam"
type = "forbidden"
source_modules = ["breastdx_core"]
forbidden_modules = [{_toml_list(TF_STACK)}]

[[tool.importlinter.contracts]]
id = "web-no-tensorflow"
name = "The web app never imports TensorFlow, TFX or Beam"
type = "forbidden"
source_modules = ["webapp"]
forbidden_modules = [{_toml_list(TF_STACK)}]
ignore_imports = [
    # CLIENT=grpc only (webapp.backends imports it lazily): TF Serving's protos import
    # TensorFlow's package; no TensorFlow op runs in the web process.
    "webapp.grpc_client -> tensorflow",
]
'''
CONTRACT_COUNT = IMPORTLINTER_BLOCK.count("[[tool.importlinter.contracts]]")
CBIS_IGNORE = re.compile(r'ignore_imports = \[\n    # CBIS-DDSM.*?\n\]\n', re.S)
# Whether components/mammo/cbis.py still imports pipeline.preflight (main() looks): the
# exception is written only while the import exists (import-linter fails on a stale one).
CBIS_PREFLIGHT_IMPORT = [True]


def importlinter_block() -> str:
    return IMPORTLINTER_BLOCK if CBIS_PREFLIGHT_IMPORT[0] else CBIS_IGNORE.sub("", IMPORTLINTER_BLOCK)

# --------------------------------------------------------------------------------------
# The README's layout section and docs/ARCHITECTURE.md's picture after the move.
LAYOUT_PICTURE = """\
```
pyproject.toml  Makefile  constraints.txt (the lock)  .python-version
breastdx_cli/         applications: the `breastdx` verbs (main.py: data, demo, summary and the
                      verb list; kfp.py + kfp_auth.py: Kubeflow; predict.py; lab.py; mammo.py;
                      weights.py)
lab/                  applications: the model lab (compare, cross-validation, evaluation report)
webapp/               applications: Flask app factory, blueprints, clients (never TensorFlow)
serving/              applications: the TF-Serving-compatible model server
local_runner.py       TFX floor: LocalDagRunner + SQLite + DirectRunner
kubeflow_runner.py    TFX floor: KubeflowV2DagRunner (KFP 2 / Vertex AI), GPU Trainer
pipeline/             TFX floor: pipeline.py (create_pipeline and its variants), console.py
                      (progress on the terminal, the rest in the log), dry_run.py, kfp_shim.py,
                      preflight.py, summary.py, synthetic.py
components/           TFX floor: image_ingest/ (custom Beam component), transform/, trainer/
                      (module files, one per folder), segmentation/ (U-Net variant), mammo/
                      (CbisExampleGen, patch_trainer/ and whole_trainer/, CBIS-DDSM readers,
                      patches, models), evaluation/ (statistics, scoring, plots, template),
                      pretrained/ (weights converter), anomaly_gate.py, baseline_evaluator.py,
                      evaluation_report.py, card_pusher.py, batchnorm.py, progress.py
breastdx_core/        ground floor, TF-free: contract.py (data contract), configs.py (every
                      setting), cluster_configs.py, loader.py (the one settings loader),
                      model_card.py + schemas/ (TFDV schemas, model card JSON Schema),
                      metrics.py, decision.py, image_files.py, pretrained.py
deploy/  docs/  bench/  tests/  tools/
```
"""
FLOORS_PICTURE = """\
```
 applications    breastdx_cli/ (`breastdx`: one module per verb group; nothing imports it)
                 lab/ (model lab)   webapp/ (Flask; never TensorFlow)   serving/ (model server)
 ─────────────────────────────────────────────────────────────────────────────────────
 TFX floor       pipeline/: create_pipeline() and its variants, console, dry run, KFP shim,
                 preflight, summary, synthetic data; local_runner.py, kubeflow_runner.py
                 components/: custom components, module files (one folder each), and the
                 libraries they use (evaluation/, mammo/{cbis,images,patches,models,heatmap},
                 trainer/diagnostics)
 ─────────────────────────────────────────────────────────────────────────────────────
 ground floor    breastdx_core/: contract (data contract), configs + cluster_configs (every
 (TF-free)       setting) read through loader (one loader), model_card (+ schemas/), metrics,
                 decision, image_files, pretrained
```
"""


def _moves_table() -> str:
    rows = ["| before | after |", "| --- | --- |"]
    for old, new in MOVES:
        rows.append(f"| `{old}` | `{new}` |")
    for old, new in DATA_MOVES:
        rows.append(f"| `{old}/` | `{new}/` |")
    return "\n".join(rows) + "\n"


ARCH_CONTRACTS = f"""\
| contract | kind | says |
| --- | --- | --- |
| `layers` | layers | `breastdx_cli` > `lab` \\| `webapp` > `serving` > `pipeline` > `components` > `breastdx_core`: no import upward, and `lab` and `webapp` never import each other |
| `ground-no-tensorflow` | forbidden | `breastdx_core` imports none of {", ".join(TF_STACK)} (directly or through anything) |
| `web-no-tensorflow` | forbidden | `webapp` imports none of them either |
| no loops | `tests/test_architecture.py` | the module graph (function-level imports included) has no cycle |
| verbs by import | `tests/test_architecture.py` | `breastdx_cli/main.py` registers its verbs by importing their modules (no `importlib`), and no module imports `breastdx_cli.main` |

### Exceptions (each an `ignore_imports` line)

| import | why | goes away when |
| --- | --- | --- |
| `components.mammo.cbis -> pipeline.preflight` | CBIS-DDSM's preflight raises the pipeline's `PreflightError` (a lazy import) | the check moves to `pipeline/preflight.py` |
| `webapp.grpc_client -> tensorflow` | TF Serving's gRPC protos import TensorFlow's package (no op runs); loaded only for `CLIENT=grpc` by `webapp.backends` | a proto-only package |

import-linter fails on an ignore line that no longer matches: removing the import forces
removing the exception.

"""


# --------------------------------------------------------------------------------------
# One settings loader for every settings dataclass: breastdx_core/loader.py, and the two
# copies of `_coerce`/`load` (configs.py, cluster_configs.py) replaced by calls to it.
# A function is replaced only where its code (ast.dump, after the reference rewrite) is
# still the one this table was written against; otherwise the tool says so and leaves
# that file as it is (the lead folds it by hand, or re-runs a refreshed tool).
LOADER_FILE = "breastdx_core/loader.py"
LOADER_SOURCE = '''"""One loader for every settings dataclass: its defaults, then ``BREASTDX_<FIELD>``
environment variables, then overrides (CLI flags; None means "not given").

Called by `breastdx_core.configs.load` (PipelineConfig: it owns the prefix, so an unknown
``BREASTDX_*`` variable is an error) and `breastdx_core.cluster_configs.load`
(ClusterConfig: reads only its own fields). TF-free; imports nothing of the project.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Collection, Dict, Mapping, Tuple, Type

ENV_PREFIX = "BREASTDX_"


def env_name(field_name: str) -> str:
    """The variable that sets a field: ``BREASTDX_<FIELD>``."""
    return ENV_PREFIX + field_name.upper()


def coerce(field: dataclasses.Field, raw: str) -> Any:
    """An environment string as the field's type, judged by its default: true/false for a
    bool, a number for an int or a float, comma-separated scalars for a tuple of scalars
    (``BREASTDX_TUNER_DROPOUTS=0.1,0.3``), else the string itself.

    Raises:
        ValueError: saying what the value must be (`load` adds the variable and the value).
    """
    default = field.default
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("must be true or false")
    if isinstance(default, (int, float)):
        try:
            return type(default)(raw)
        except ValueError:
            raise ValueError("must be a number") from None
    if isinstance(default, tuple) and default and not isinstance(default[0], tuple):
        kind = type(default[0])
        try:
            return tuple(kind(item.strip()) for item in raw.split(",") if item.strip())
        except ValueError:
            raise ValueError(f"must be comma-separated {kind.__name__} values") from None
    return raw


def load(cls: Type[Any], env: Mapping[str, str], overrides: Mapping[str, Any], *, strict: bool = False,
         skip: Collection[str] = (), skip_prefixes: Tuple[str, ...] = (),
         convert: Callable[[dataclasses.Field, str], Any] = coerce, error: Type[Exception] = ValueError,
         what: str = "setting") -> Dict[str, Any]:
    """The keyword arguments for ``cls(**values)``: ``BREASTDX_<FIELD>`` variables, then
    ``overrides``; the fields neither sets keep their defaults.

    Args:
        strict: every ``BREASTDX_*`` variable (less ``skip`` and ``skip_prefixes``) must name
            a field of ``cls``, and an empty one counts; otherwise only ``cls``'s own
            variables are read, and an empty one means "not set".
        convert: string -> value (``coerce``, or a wrapper that reads some fields its own way).
        error: raised for a bad or unknown variable or override, naming it.
        what: how the messages call a setting ("setting", "cluster setting").
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if strict:
        found = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX) or key in skip or key.startswith(tuple(skip_prefixes)):
                continue
            name = key[len(ENV_PREFIX):].lower()
            if name not in fields:
                raise error(f"unknown {what} {key}; known: {', '.join(env_name(n) for n in fields)}")
            found[name] = raw
    else:
        found = {name: env[env_name(name)] for name in fields if env.get(env_name(name))}
    values: Dict[str, Any] = {}
    for name, raw in found.items():
        try:
            values[name] = convert(fields[name], raw)
        except ValueError as exc:
            raise error(f"{env_name(name)} {exc}, got {raw!r}") from None
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in fields:
            raise error(f"unknown {what} {name!r}")
        values[name] = value
    return values
'''
LOADER_TEST_FILE = "tests/test_settings_loader.py"
LOADER_TEST_SOURCE = '''"""One loader for every settings dataclass (breastdx_core/loader.py): the pipeline's and
the cluster's settings both go through it, with the same reading of a variable."""
import dataclasses

import pytest

from breastdx_core import cluster_configs, configs, loader


@dataclasses.dataclass
class Toy:
    steps: int = 3
    rate: float = 0.5
    on: bool = False
    sizes: tuple = (16, 32)
    name: str = "a"


def test_variables_then_overrides_over_the_defaults():
    env = {"BREASTDX_STEPS": "7", "BREASTDX_ON": "yes", "BREASTDX_SIZES": "8, 4", "OTHER": "x"}
    values = loader.load(Toy, env, {"rate": 0.1, "name": None})
    assert Toy(**values) == Toy(steps=7, rate=0.1, on=True, sizes=(8, 4), name="a")


@pytest.mark.parametrize("env, message", [
    ({"BREASTDX_STEPS": "many"}, "BREASTDX_STEPS must be a number, got 'many'"),
    ({"BREASTDX_ON": "maybe"}, "BREASTDX_ON must be true or false, got 'maybe'"),
    ({"BREASTDX_SIZES": "8,big"}, "BREASTDX_SIZES must be comma-separated int values, got '8,big'"),
])
def test_a_bad_value_names_the_variable_and_what_it_must_be(env, message):
    with pytest.raises(ValueError, match=message):
        loader.load(Toy, env, {})


def test_strict_owns_the_prefix_and_a_lax_load_reads_only_its_fields():
    env = {"BREASTDX_NOPE": "1", "BREASTDX_STEPS": ""}
    assert loader.load(Toy, env, {}) == {}  # lax: not its variable; empty means "not set"
    with pytest.raises(ValueError, match="unknown setting BREASTDX_NOPE"):
        loader.load(Toy, env, {}, strict=True)
    assert loader.load(Toy, env, {}, strict=True, skip={"BREASTDX_NOPE"}, convert=lambda f, raw: raw or 9) == \\
        {"steps": 9}
    with pytest.raises(KeyError, match="unknown setting 'nope'"):
        loader.load(Toy, {}, {"nope": 1}, error=KeyError)


def test_both_settings_dataclasses_use_it():
    """The same bad number reads the same from either loader; the cluster's own error class."""
    with pytest.raises(ValueError, match="BREASTDX_TRAIN_STEPS must be a number, got 'x'"):
        configs.load(env={"BREASTDX_TRAIN_STEPS": "x"})
    with pytest.raises(cluster_configs.ClusterConfigError, match="BREASTDX_GPU_COUNT must be a number, got 'x'"):
        cluster_configs.load(env={"BREASTDX_GPU_COUNT": "x"})
    # the cluster's variables are not the pipeline's unknown settings, and the reverse
    assert configs.load(env={"BREASTDX_GPU_COUNT": "1"}).task
    assert cluster_configs.load(env={"BREASTDX_TRAIN_STEPS": "5"}).gpu_count == 1
'''
CONFIGS_NEW = '''def _coerce(field: dataclasses.Field, raw: str) -> Any:
    """Turns an environment string into the field's type: `loader.coerce`, less two settings
    read their own way (``none`` or empty: no weights file; Beam flags split on spaces)."""
    if field.name == "weights":
        return None if raw.lower() in ("", "none") else raw
    if field.name == "extra_beam_args":
        return tuple(raw.split())
    return loader.coerce(field, raw)


def load(env: Optional[Mapping[str, str]] = None, **overrides: Any) -> PipelineConfig:
    """Builds the configuration: defaults, then ``BREASTDX_<FIELD>`` variables, then
    ``overrides`` (CLI flags; None means "not given") through `loader.load`, the one loader
    of every settings dataclass; then the task's defaults and, on synthetic data, the quick
    training budget for what was not set.

    Raises:
        ValueError: a variable or flag names an unknown setting or has a bad value.
    """
    from breastdx_core import cluster_configs  # the cluster's own BREASTDX_* settings

    env = os.environ if env is None else env
    values = loader.load(PipelineConfig, env, overrides, strict=True, skip=cluster_configs.ENV_NAMES,
                         skip_prefixes=OTHER_ENV_PREFIXES, convert=_coerce)
    task = values.get("task", next(f.default for f in dataclasses.fields(PipelineConfig) if f.name == "task"))
    for name, value in TASK_DEFAULTS.get(task, {}).items():
        values.setdefault(name, value)
    if "data_root" not in values or values.get("variant") == "segment":
        for name, value in {**SYNTHETIC_BUDGET, **SYNTHETIC_TASK_BUDGET.get(task, {})}.items():
            values.setdefault(name, value)
    return PipelineConfig(**values)
'''
CLUSTER_NEW = '''def load(env: Optional[Mapping[str, str]] = None, **overrides: Any) -> ClusterConfig:
    """Builds the cluster settings through `loader.load`, the one loader of every settings
    dataclass: defaults, then ``BREASTDX_<FIELD>`` variables for the fields above (other
    BREASTDX_ variables belong to breastdx_core/configs.py and are left alone), then
    ``overrides`` (CLI flags; None means "not given").

    Raises:
        ClusterConfigError: a value is malformed or out of range.
    """
    env = os.environ if env is None else env
    return ClusterConfig(**loader.load(ClusterConfig, env, overrides, error=ClusterConfigError,
                                       what="cluster setting"))
'''
# file -> {function name: (sha256 of ast.dump of the function as the tool expects it, new
# source or "" to delete)}; the new sources replace the first expected function, in order.
SETTINGS_FOLD = {
    "breastdx_core/configs.py": [("_coerce", "16e7316e588a3c15", CONFIGS_NEW), ("load", "b2c38afcdd31fa7a", "")],
    "breastdx_core/cluster_configs.py": [("_coerce", "80384005992aebe1", ""), ("load", "8e5e54dba593347b", CLUSTER_NEW)],
}


SETTINGS_FOLDED: List[str] = []


def fold_settings(path: str, text: str) -> str:
    """Replaces the file's `_coerce`/`load` by SETTINGS_FOLD's sources and imports the loader
    (only when every function still matches; otherwise a warning and no change)."""
    import hashlib

    if "loader.load(" in text:
        SETTINGS_FOLDED.append(path)
        return text
    tree = ast.parse(text)
    nodes = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    plan = []
    for name, digest, new in SETTINGS_FOLD[path]:
        node = nodes.get(name)
        found = hashlib.sha256(ast.dump(node).encode()).hexdigest()[:16] if node else None
        if found != digest:
            warn(f"{path}: {name}() changed since tools/relayout.py was written ({found} != {digest}); "
                 f"not folded into {LOADER_FILE}: fold it by hand")
            return text
        start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
        plan.append((start, node.end_lineno, new))
    lines = text.split("\n")
    for start, end, new in sorted(plan, reverse=True):
        replacement = new.rstrip("\n").split("\n") if new else []
        # a deleted function takes the blank lines after it along
        while not new and end < len(lines) and not lines[end].strip():
            end += 1
        lines[start:end] = replacement
    text = "\n".join(lines).rstrip("\n") + "\n"
    SETTINGS_FOLDED.append(path)
    # import the loader: into a one-line `from breastdx_core import ...`, or after the imports
    own = re.search(r"^from breastdx_core import ([\w, ]+)$", text, re.M)
    if own:
        names = sorted({n.strip() for n in own.group(1).split(",")} | {"loader"})
        text = text[:own.start()] + f"from breastdx_core import {', '.join(names)}" + text[own.end():]
    else:
        tree = ast.parse(text)
        last = max(n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
        lines = text.split("\n")
        lines[last:last] = ["", "from breastdx_core import loader"]
        text = "\n".join(lines)
    return text


# --------------------------------------------------------------------------------------
def mod_path(module: str) -> str:
    return module.replace(".", "/")


class Mapper:
    """Old -> new for module names and file paths, longest prefix first."""

    def __init__(self, moves: Sequence[Tuple[str, str]], data_moves: Sequence[Tuple[str, str]]):
        self.moves = sorted(moves, key=lambda m: -len(m[0]))
        self.data_moves = sorted(data_moves, key=lambda m: -len(m[0]))
        alternation = "|".join(re.escape(old) for old, _ in self.moves)
        self.dotted = re.compile(rf"(?<![\w.])({alternation})(?![\w])")
        paths = [(mod_path(o), mod_path(n)) for o, n in self.moves] + list(self.data_moves)
        self.paths = sorted(paths, key=lambda m: -len(m[0]))
        path_alt = "|".join(re.escape(old) for old, _ in self.paths)
        # a path starts the token or follows a `/` (/opt/breastdx/pipeline/schemas/...)
        self.slashed = re.compile(rf"(?<![\w.\-])({path_alt})(?=(\.py)?(?![\w\-]))")

    def module(self, name: str) -> Optional[str]:
        for old, new in self.moves:
            if name == old or name.startswith(old + "."):
                return new + name[len(old):]
        return None

    def key_length(self, name: str) -> int:
        for old, _ in self.moves:
            if name == old or name.startswith(old + "."):
                return len(old)
        return 0

    def path(self, path: str) -> Optional[str]:
        stem, suffix = (path[:-3], ".py") if path.endswith(".py") else (path, "")
        for old, new in self.paths:
            if stem == old or stem.startswith(old + "/"):
                return new + stem[len(old):] + suffix
        return None


MAP = Mapper(MOVES, DATA_MOVES)

FROM_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from[ \t]+(?P<module>[\w.]+)[ \t]+import[ \t]+"
    r"(?P<names>\([^)]*\)|(?:[^\n#\\]|\\\n)+?)(?P<tail>[ \t]*(?:#[^\n]*)?)$", re.M)
PLAIN_IMPORT = re.compile(r"^(?P<indent>[ \t]*)import[ \t]+(?P<names>[\w. \t,]+?)(?P<tail>[ \t]*(?:#[^\n]*)?)$", re.M)


def _parse_names(raw: str) -> Optional[List[Tuple[str, Optional[str]]]]:
    body = raw.strip()
    if body.startswith("("):
        body = body[1:-1]
    body = re.sub(r"#[^\n]*", "", body).replace("\\\n", " ")
    names = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"([\w*]+)(?:\s+as\s+(\w+))?", part)
        if not match:
            return None
        names.append((match.group(1), match.group(2)))
    return names


def rewrite_from_import(match: re.Match) -> str:
    module, indent, tail = match.group("module"), match.group("indent"), match.group("tail")
    names = _parse_names(match.group("names"))
    if names is None:
        return match.group(0)
    module_key = MAP.key_length(module)
    groups: Dict[str, List[str]] = {}
    for name, alias in names:
        full = f"{module}.{name}"
        if MAP.key_length(full) == len(full) > module_key:  # the name is a moved module
            parent, leaf = MAP.module(full).rsplit(".", 1)
            local = alias or name
            groups.setdefault(parent, []).append(leaf if leaf == local else f"{leaf} as {local}")
        else:
            parent = MAP.module(module) or module
            groups.setdefault(parent, []).append(name if alias is None else f"{name} as {alias}")
    original = [name if alias is None else f"{name} as {alias}" for name, alias in names]
    if list(groups) == [module]:
        return match.group(0)
    if len(groups) == 1 and next(iter(groups.values())) == original:
        # one destination, the same names: only the module changes (the formatting stays)
        start, end = match.span("module")
        return match.group(0)[:start - match.start()] + next(iter(groups)) + match.group(0)[end - match.start():]
    lines = []
    for parent, items in groups.items():
        line = f"{indent}from {parent} import {', '.join(items)}"
        if len(line) + len(tail) > 110:
            line = f"{indent}from {parent} import (\n" + "".join(f"{indent}    {i},\n" for i in items) + f"{indent})"
        lines.append(line + tail)
    return "\n".join(lines)


def rewrite_plain_import(match: re.Match) -> str:
    names = match.group("names")
    parts = [p.strip() for p in names.split(",")]
    out, changed = [], False
    for part in parts:
        m = re.fullmatch(r"([\w.]+)(\s+as\s+\w+)?", part)
        if not m:
            return match.group(0)
        new = MAP.module(m.group(1))
        if new:
            changed = True
            out.append(new + (m.group(2) or ""))
        else:
            out.append(part)
    if not changed:
        return match.group(0)
    return f"{match.group('indent')}import {', '.join(out)}{match.group('tail')}"


def _join_pattern() -> List[Tuple[re.Pattern, str]]:
    """os.path.join(..., "pipeline", "cli.py") forms of the moved files."""
    rules = []
    for old, new in MAP.paths:
        for suffix in (".py", ""):
            old_parts, new_parts = (old + suffix).split("/"), (new + suffix).split("/")
            if len(old_parts) < 2:
                continue
            pattern = r"\s*,\s*".join(rf'(["\']){re.escape(p)}\{i + 1}' for i, p in enumerate(old_parts))
            rules.append((re.compile(r"(?<![\w])" + pattern), ", ".join(f'"{p}"' for p in new_parts)))
    return rules


JOINS = _join_pattern()
ALL_TOPS = OLD_TOPS + NEW_TOPS
TOP_SEQUENCE = re.compile(
    r"(?P<q>[\"'])(?P<first>%s)(?P<suffix>\*|/\*\*)?(?P=q)(?:[ \t]*,[ \t]*[\"'](?:%s)(?:\*|/\*\*)?[\"'])+"
    % ("|".join(ALL_TOPS), "|".join(ALL_TOPS)))


def add_new_tops(match: re.Match) -> str:
    text = match.group(0)
    close = re.compile(r"[)\]]").search(match.string, match.end())
    whole = match.string[match.start():close.start() if close else match.end()]
    found = re.findall(r"[\"']([\w]+)(?:\*|/\*\*)?[\"']", whole)
    if not {"pipeline", "components"} <= set(found) or len(found) < 3:
        return text
    missing = [t for t in NEW_TOPS if t not in found]
    if not missing:
        return text
    q, suffix = match.group("q"), match.group("suffix") or ""
    added = ", ".join(f"{q}{t}{suffix}{q}" for t in missing)
    line_start = match.string.rfind("\n", 0, match.start()) + 1
    line_end = match.string.find("\n", match.end())
    line_end = len(match.string) if line_end < 0 else line_end
    if line_end - line_start + len(added) + 2 <= 110:
        return f"{text}, {added}"
    before = match.string[line_start:match.start()]
    column = max(before.rfind("("), before.rfind("[")) + 1
    return f"{text},\n{' ' * column}{added}"


def rewrite_python_imports(text: str) -> str:
    text = FROM_IMPORT.sub(rewrite_from_import, text)
    return PLAIN_IMPORT.sub(rewrite_plain_import, text)


def rewrite_references(text: str, path: str) -> str:
    if path.endswith((".py", ".md")):
        text = rewrite_python_imports(text)
    text = MAP.dotted.sub(lambda m: MAP.module(m.group(1)), text)
    text = MAP.slashed.sub(lambda m: MAP.path(m.group(1)), text)
    if path.endswith(".py"):
        for pattern, replacement in JOINS:
            text = pattern.sub(replacement, text)
    text = TOP_SEQUENCE.sub(add_new_tops, text)
    return text


# --------------------------------------------------------------------------------------
# Structural patches: file -> function(text) -> text. Each is idempotent and says when the
# text it expects is not there.
WARNINGS: List[str] = []


def warn(message: str) -> None:
    WARNINGS.append(message)


DIR_LINE = re.compile(r"(?<![\w./\-])pipeline/(?=\*\*|[\s\"']|$)")


def clone_top_dir_lines(text: str, path: str) -> str:
    """A line naming pipeline/ as a whole (COPY pipeline/ pipeline/, !pipeline/,
    - "pipeline/**") gets a twin for each new top-level package."""
    lines = text.split("\n")
    out = []
    for line in lines:
        out.append(line)
        if DIR_LINE.search(line):
            for top in NEW_TOPS:
                twin = DIR_LINE.sub(top + "/", line)
                if twin not in lines:
                    out.append(twin)
    return "\n".join(out)


WEB_COPY_BLOCK = re.compile(
    r"^# Only the TF-free core of the pipeline package.*?^COPY components/image_ingest/[^\n]*\n", re.M | re.S)
WEB_COPY_NEW = (
    "# The TF-free ground floor the app imports: the data contract, the decision rule, the\n"
    "# model card reader and the magic-byte check ImageIngest uses (import-linter keeps it free of\n"
    "# TensorFlow; tests/test_deploy_images.py lists what the app imports).\n"
    "COPY breastdx_core/ breastdx_core/\n")


def patch_web_dockerfile(text: str) -> str:
    if WEB_COPY_NEW in text:
        return text
    new, count = WEB_COPY_BLOCK.subn(WEB_COPY_NEW, text)
    if not count:
        warn("deploy/webapp.Dockerfile: its COPY block changed since tools/relayout.py was written; "
             "copy breastdx_core/ instead of pipeline/ and components/ files by hand")
    return new


WEB_IGNORE_OLD = ["!pipeline/__init__.py", "!pipeline/contract.py", "!pipeline/decision.py",
                  "!pipeline/model_card.py", "!components/__init__.py", "!components/image_ingest/__init__.py",
                  "!components/image_ingest/image_files.py"]
WEB_IGNORE_OLD += ["!" + MAP.path(line[1:]) for line in WEB_IGNORE_OLD if MAP.path(line[1:])]


def patch_web_dockerignore(text: str) -> str:
    lines = text.split("\n")
    if "!breastdx_core/" in lines:
        return text
    out, placed = [], False
    for line in lines:
        if line.strip() in WEB_IGNORE_OLD:
            if not placed:
                out.append("!breastdx_core/")
                placed = True
            continue
        out.append(line)
    leftovers = [l for l in out if re.match(r"!(pipeline|components)/", l)]
    if not placed or leftovers:
        warn(f"deploy/webapp.Dockerfile.dockerignore: check by hand (left: {leftovers or 'no old lines found'})")
    return "\n".join(out)


def patch_pyproject(text: str) -> str:
    # [tool.importlinter], the comment lines right above it and its contracts, up to the
    # next other table or the end of the file
    header = re.search(r"^\[tool\.importlinter\][ \t]*$", text, re.M)
    start = header.start() if header else -1
    if start < 0:
        warn("pyproject.toml: no [tool.importlinter]; appending the contracts")
        text = text.rstrip("\n") + "\n\n" + importlinter_block()
    elif importlinter_block().split("[tool.importlinter]")[1] not in text:
        lines = text[:start].rstrip("\n").split("\n")
        while lines and lines[-1].startswith("#"):
            lines.pop()
        head = "\n".join(lines).rstrip("\n") + "\n\n"
        rest = text[start:]
        following = re.search(r"^\[\[?(?!\[)(?!tool\.importlinter)[^\]\n]+\]\]?[ \t]*$", rest, re.M)
        tail = ("\n" + rest[following.start():]) if following else ""
        text = head + importlinter_block() + tail
    # package-data follows the data files
    section = re.search(r"^\[tool\.setuptools\.package-data\]\n((?:[^\[\n][^\n]*\n?)*)", text, re.M)
    if section:
        entries: Dict[str, List[str]] = {}
        for line in section.group(1).splitlines():
            m = re.match(r"\s*([\w\"]+)\s*=\s*(\[.*\])\s*$", line)
            if not m:
                continue
            package = m.group(1).strip('"')
            for pattern in ast.literal_eval(m.group(2)):
                full = f"{package}/{pattern}"
                moved = MAP.path(full.rsplit("/", 1)[0])
                if moved:
                    full = moved + "/" + full.rsplit("/", 1)[1]
                top, rel = full.split("/", 1)
                entries.setdefault(top, []).append(rel)
        body = "".join(f"{top} = [{', '.join(repr(p).replace(chr(39), chr(34)) for p in globs)}]\n"
                       for top, globs in entries.items())
        text = text[:section.start(1)] + body + text[section.end(1):]
    else:
        warn("pyproject.toml: no [tool.setuptools.package-data] section")
    return text


def replace_section(text: str, heading: re.Pattern, new_body: str, path: str, new_heading: str = None,
                    until: str = r"^## ") -> str:
    m = heading.search(text)
    if not m:
        warn(f"{path}: section {heading.pattern!r} not found; edit it by hand")
        return text
    body_start = m.end()
    nxt = re.compile(until, re.M).search(text, body_start)
    end = nxt.start() if nxt else len(text)
    head = (new_heading + "\n") if new_heading else text[m.start():m.end()]
    return text[:m.start()] + head + new_body + text[end:]


def patch_readme(text: str) -> str:
    m = re.search(r"^## Layout\n", text, re.M)
    if not m:
        warn("README.md: no '## Layout' section; write the layout by hand")
        return text
    nxt = re.compile(r"^## ", re.M).search(text, m.end())
    end = nxt.start() if nxt else len(text)
    section = text[m.end():end]
    fence = re.search(r"```\n.*?```\n", section, re.S)
    if not fence:
        warn("README.md: the Layout section has no code block")
        return text
    section = section[:fence.start()] + LAYOUT_PICTURE + section[fence.end():]
    section = section.replace("and the target layout:", "and the moves that made this layout:")
    return text[:m.end()] + section + text[end:]


def patch_architecture(text: str) -> str:
    path = "docs/ARCHITECTURE.md"
    text = text.replace("# Architecture: the floors, today and where they go\n", "# Architecture: the floors\n")
    if "## The floors\n" not in text:
        m = re.search(r"^## The floors[^\n]*\n", text, re.M)
        if m:
            nxt = re.compile(r"^## ", re.M).search(text, m.end())
            section = text[m.end():nxt.start() if nxt else len(text)]
            fence = re.search(r"```\n.*?```\n", section, re.S)
            if fence:
                section = section[:fence.start()] + floors_picture(fence.group(0)) + section[fence.end():]
            else:
                warn(f"{path}: the floors section has no picture")
            text = text[:m.start()] + "## The floors\n" + section + text[nxt.start() if nxt else len(text):]
        else:
            warn(f"{path}: no '## The floors' section; add the picture by hand")
    if "| `layers` | layers | `breastdx_cli`" not in text or CBIS_PREFLIGHT_IMPORT[0] != (
            "`components.mammo.cbis -> pipeline.preflight`" in text):
        m = re.search(r"^## Contracts[^\n]*\n\n", text, re.M)
        if m:
            nxt = re.compile(r"^### (?!Exceptions)|^## ", re.M).search(text, m.end())
            end = nxt.start() if nxt else len(text)
            contracts = ARCH_CONTRACTS if CBIS_PREFLIGHT_IMPORT[0] else re.sub(
                r"^\| `components\.mammo\.cbis -> pipeline\.preflight`[^\n]*\n", "", ARCH_CONTRACTS, flags=re.M)
            text = text[:m.end()] + contracts + text[end:]
        else:
            warn(f"{path}: no '## Contracts' section; update the contracts table by hand")
    if SETTINGS_FOLDED:  # set while breastdx_core/*.py were rewritten (they sort before docs/)
        text = re.sub(r"^\* The cluster: `breastdx_core/cluster_configs\.py` \(its own.*?(?=^\* |^\n|^## |\Z)",
                      "* The cluster: `breastdx_core/cluster_configs.py`. It and `configs.py` read variables and\n"
                      "  flags through `breastdx_core/loader.py`, the one loader of every settings dataclass\n"
                      "  (`_coerce` once; `tests/test_settings_loader.py`).\n", text, flags=re.M | re.S)
    if "## The moves to this layout" not in text:
        m = re.search(r"^## The target layout\n", text, re.M)
        body = ("\n`tools/relayout.py` made these moves (issue 9) and rewrote every reference to them;\n"
                "its MOVES table is the record.\n\n" + _moves_table() + "\n")
        if m:
            nxt = re.compile(r"^## ", re.M).search(text, m.end())
            text = text[:m.start()] + "## The moves to this layout\n" + body + text[nxt.start() if nxt else len(text):]
        else:
            text = text.rstrip("\n") + "\n\n## The moves to this layout\n" + body
    return text


def floors_picture(old_picture: str) -> str:
    """FLOORS_PICTURE with the old picture's drawing of the pipeline variants (the lines
    after the one naming create_pipeline(), up to the next rule) kept under pipeline/."""
    lines = old_picture.split("\n")
    start = next((i for i, line in enumerate(lines) if "create_pipeline()" in line), None)
    variants: List[str] = []
    if start is not None:
        for line in lines[start + 1:]:
            if "───" in line or line.startswith("```") or not line.startswith(" " * 17):
                break
            variants.append(line)
    picture = FLOORS_PICTURE.split("\n")
    anchor = next(i for i, line in enumerate(picture) if "create_pipeline()" in line)
    return "\n".join(picture[:anchor + 2] + variants + picture[anchor + 2:])


DROPPED_SOURCE_TEST = '''def test_the_check_catches_an_ignore_file_that_drops_a_source(tmp_path):
    """An ignore file that leaves the ground floor out (no `breastdx_core/`): the COPY of
    breastdx_core/ is reported missing, and is not once the folder is let in."""
    os.makedirs(tmp_path / "deploy")
    for rel in ("webapp.Dockerfile",):
        (tmp_path / "deploy" / rel).write_text(open(os.path.join(DEPLOY, rel)).read())
    for rel in ("breastdx_core/__init__.py", "breastdx_core/contract.py", "webapp/__init__.py"):
        os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
        (tmp_path / rel).write_text("")
    before = ["**", "!deploy/webapp-requirements.txt", "!webapp/"]
    context = exclude_paths(str(tmp_path), before, dockerfile="deploy/webapp.Dockerfile")
    assert "webapp/__init__.py" in context and "breastdx_core/__init__.py" not in context
    assert "breastdx_core/" in missing_sources("webapp.Dockerfile", context)
    context = exclude_paths(str(tmp_path), before + ["!breastdx_core/"], dockerfile="deploy/webapp.Dockerfile")
    assert "breastdx_core/" not in missing_sources("webapp.Dockerfile", context)
'''


def patch_deploy_images_test(text: str) -> str:
    """The planted-ignore-file test was about the web image's old single-file copies of
    components/; the image now copies breastdx_core/ whole, so the plant drops that."""
    m = re.search(r"^def test_the_check_catches_an_ignore_file_that_drops_a_source\(.*?(?=^\S)", text, re.M | re.S)
    if not m or "components/__init__.py\" in missing_sources" not in m.group(0):
        return text
    return text[:m.start()] + DROPPED_SOURCE_TEST + "\n\n" + text[m.end():]


def patch_architecture_test(text: str) -> str:
    new = re.sub(r'"\d+ kept, 0 broken"', f'"{CONTRACT_COUNT} kept, 0 broken"', text)
    return new


PATCHES: Dict[str, List[Callable[[str], str]]] = {
    "deploy/webapp.Dockerfile": [patch_web_dockerfile],
    "deploy/webapp.Dockerfile.dockerignore": [patch_web_dockerignore],
    "pyproject.toml": [patch_pyproject],
    "README.md": [patch_readme],
    "docs/ARCHITECTURE.md": [patch_architecture],
    "tests/test_architecture.py": [patch_architecture_test],
    "tests/test_deploy_images.py": [patch_deploy_images_test],
    "breastdx_core/configs.py": [lambda text: fold_settings("breastdx_core/configs.py", text)],
    "breastdx_core/cluster_configs.py": [lambda text: fold_settings("breastdx_core/cluster_configs.py", text)],
}
CLONE_DIR_LINES = re.compile(r"^(deploy/[^/]*Dockerfile[^/]*|\.github/workflows/[^/]+\.ya?ml|cloudbuild\.yaml)$")


# --------------------------------------------------------------------------------------
def git(*args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if check and done.returncode:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def repo_files() -> List[str]:
    tracked = git("ls-files", "-z").split("\0")
    untracked = git("ls-files", "-z", "--others", "--exclude-standard").split("\0")
    return sorted({f for f in tracked + untracked if f and os.path.isfile(os.path.join(ROOT, f))})


def plan_file_moves(files: Sequence[str]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(src, dst) pairs for every file under a moved module, package or data folder, and
    the old __init__.py files dropped by a merge."""
    moves, drops, claimed = [], [], set()
    entries = [(mod_path(o), mod_path(n)) for o, n in MAP.moves] + list(MAP.data_moves)
    entries.sort(key=lambda e: -len(e[0]))
    for old, new in entries:
        hits = [f for f in files if f not in claimed and (f == old + ".py" or f.startswith(old + "/"))]
        if not hits:
            if not (os.path.exists(os.path.join(ROOT, new + ".py")) or os.path.isdir(os.path.join(ROOT, new))):
                warn(f"{old}: neither it nor {new} exists; skipped")
            continue
        for f in hits:
            claimed.add(f)
            dst = new + ".py" if f == old + ".py" else new + f[len(old):]
            if os.path.exists(os.path.join(ROOT, dst)) or dst in [d for _, d in moves]:
                if os.path.basename(f) == "__init__.py":
                    drops.append(f)
                    continue
                warn(f"{f} -> {dst}: the destination exists; left where it is")
                continue
            moves.append((f, dst))
    return moves, drops


def depth_check(moves: Sequence[Tuple[str, str]]) -> None:
    for src, dst in moves:
        if not src.endswith(".py"):
            continue
        try:
            with open(os.path.join(ROOT, src), encoding="utf-8") as handle:
                source = handle.read()
        except OSError:
            continue
        if "__file__" in source and src.count("/") != dst.count("/"):
            warn(f"{src} -> {dst}: computes a path from __file__ and changes depth; check it by hand")


PROTECTED = re.compile(r"^## The moves to this layout\n.*?(?=^## |\Z)", re.M | re.S)


def rewrite(path: str, text: str) -> str:
    """The generic reference rewrite, then the file's own patches (which write new-layout
    text that must not be rewritten again: the moves table is protected)."""
    kept = PROTECTED.search(text) if path.endswith(".md") else None
    if kept:
        text = text[:kept.start()] + "\0PROTECTED\0" + text[kept.end():]
    text = rewrite_references(text, path)
    if kept:
        text = text.replace("\0PROTECTED\0", kept.group(0))
    if CLONE_DIR_LINES.match(path) or path.endswith(".dockerignore"):
        text = clone_top_dir_lines(text, path)
    for patch in PATCHES.get(path, []):
        text = patch(text)
    if path in DOCSTRINGS:
        old, new = DOCSTRINGS[path]
        if text == old:
            text = new
    return text


def is_text(path: str) -> bool:
    base = os.path.basename(path)
    return (base.endswith(TEXT_SUFFIXES) or "Dockerfile" in base or base in ("Makefile", ".gitignore")
            or "/" not in path and "." not in base)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="print what would change; change nothing")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    files = repo_files()
    moves, drops = plan_file_moves(files)
    depth_check(moves)
    new_path = dict(moves)
    final_files = sorted({new_path.get(f, f) for f in files if f not in drops})
    source_of = {new_path.get(f, f): f for f in files}

    cbis = next((f for f in ("components/mammo/cbis.py", "pipeline/mammo/cbis.py") if f in files), None)
    if cbis:
        with open(os.path.join(ROOT, cbis), encoding="utf-8") as handle:
            CBIS_PREFLIGHT_IMPORT[0] = bool(re.search(r"pipeline\.preflight|from pipeline import[^\n]*\bpreflight\b",
                                                      handle.read()))
    changed: List[str] = []
    contents: Dict[str, str] = {}
    for final in final_files:
        if final in SKIP_FILES or not is_text(final):
            continue
        try:
            with open(os.path.join(ROOT, source_of[final]), encoding="utf-8") as handle:
                text = handle.read()
        except (UnicodeDecodeError, OSError):
            continue
        new = rewrite(final, text)
        if new != text:
            contents[final] = new
            changed.append(final)
    new_files = dict(NEW_FILES)
    if any("loader.load(" in contents.get(f, "") for f in SETTINGS_FOLD):
        new_files.update({LOADER_FILE: LOADER_SOURCE, LOADER_TEST_FILE: LOADER_TEST_SOURCE})
    created = [f for f in new_files if not os.path.exists(os.path.join(ROOT, f))]

    print(f"moves: {len(moves)} file(s); merged __init__.py dropped: {len(drops)}; new files: {len(created)}; "
          f"files rewritten: {len(changed)}")
    for src, dst in moves:
        print(f"  git mv {src} {dst}")
    for f in drops:
        print(f"  git rm {f}")
    for f in created:
        print(f"  create {f}")
    for f in changed:
        print(f"  rewrite {f}")
    if not args.check:
        for src, dst in moves:
            os.makedirs(os.path.dirname(os.path.join(ROOT, dst)) or ".", exist_ok=True)
            if git("ls-files", "--error-unmatch", src, check=False):
                git("mv", src, dst)
            else:
                os.rename(src, dst)
                warn(f"{src}: untracked, moved without git (git add {dst})")
        for f in drops:
            git("rm", "-q", "-f", f)
        for f in created:
            os.makedirs(os.path.dirname(f), exist_ok=True)
            with open(f, "w", encoding="utf-8") as handle:
                handle.write(new_files[f])
            git("add", f)
        for f, text in contents.items():
            with open(os.path.join(ROOT, f), "w", encoding="utf-8") as handle:
                handle.write(text)
        # old folders left empty (or holding only caches) go
        for src, _ in moves:
            folder = os.path.dirname(src)
            while folder and os.path.isdir(folder):
                rest = [e for e in os.listdir(folder) if e != "__pycache__"]
                if rest:
                    break
                subprocess.run(["rm", "-rf", folder], check=True)
                folder = os.path.dirname(folder)
    for message in WARNINGS:
        print(f"warning: {message}", file=sys.stderr)
    if not args.check and (moves or changed or created):
        print("next: reinstall the editable package so `breastdx` and the new top-level packages resolve "
              "(`.venv/bin/pip install --no-deps -e .`, or `make venv`: pyproject.toml changed), then "
              "`.venv/bin/lint-imports` and the tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
