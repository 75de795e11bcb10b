"""The framework workarounds that code on the components floor calls (index: docs/compat.md).

They live here rather than in pipeline/compat/, which holds the rest, because components/
may not import the pipeline floor above it (docs/ARCHITECTURE.md, the `layers` contract).
Importing this module is cheap: TFX is imported only when a workaround runs, since
components/__init__.py imports it for every ``import components``.

- `partition`: ExampleGen's split of one record, through TFX's private partition function
  (components/image_ingest/executor.py).
- `artifact_types`: the module ``__getattr__`` through which TFX's KFP v2 entrypoint finds a
  custom artifact class by its type name (components/__init__.py).

Each has a canary in tests/test_compat.py that fails when the TFX behaviour changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any


def partition(record: Any, num_partitions: int, buckets: Sequence[int], split_config: Any) -> int:
    """The index of the output split TFX's ExampleGens put ``record`` in.

    Args:
        record: the tf.Example (parsed) when ``split_config`` names a partition feature,
            otherwise its deterministic serialization (bytes), as TFX hashes them.
        num_partitions: the number of output splits.
        buckets: the cumulative hash bucket counts of the splits.
        split_config: the output config's ``SplitConfig``.

    TFX 1.16 has this only as ``base_example_gen_executor._PartitionFn``, a private Beam
    partition function; the ingest executor calls it per shard (not per Beam element), so
    its splits stay those of every other ExampleGen. Delete this wrapper when TFX makes the
    function public; follow it when TFX changes it (the canary fails on a new signature).
    """
    from tfx.components.example_gen import base_example_gen_executor

    return base_example_gen_executor._PartitionFn(record, num_partitions, buckets, split_config)


def artifact_types(package: str, classes: dict[str, str]) -> Callable[[str], type]:
    """The module-level ``__getattr__`` (PEP 562) of ``package`` that answers each name
    in ``classes`` with the class at its dotted path, imported on first use.

    TFX's KFP v2 container entrypoint imports a custom artifact class by its schema title
    (``kubeflow_v2_entrypoint_utils._retrieve_class_path``), and TFX compiles a custom
    type's ``TYPE_NAME`` as that title: a type named ``components.EvaluationReport`` must be
    importable as the attribute ``EvaluationReport`` of the package ``components``. Lazily,
    so that ``import components`` does not import TFX. Delete when TFX resolves custom types
    another way (a registry), or when the type's name is its real module path (which would
    change its MLMD type, and the lineage of every stored report).
    """

    def __getattr__(name: str) -> type:
        path = classes.get(name)
        if path is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = path.rpartition(".")
        return getattr(importlib.import_module(module), attribute)

    return __getattr__
