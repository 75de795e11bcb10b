"""Gives the compiled ExampleGen the container resources TFX's step builder drops.

Called by kubeflow_runner.py (`compile_pipeline`) on the package KubeflowV2DagRunner wrote.
TFX 1.16's step builder compiles a FileBasedExampleGen (the ImageExampleGen) through
``_build_file_based_example_gen_spec``, which never reads the component's
``platform_config``: its pod would be scheduled with no requests or limits, while every
other component keeps the resources `kubeflow_runner.configure_steps` gave it. This fills
in every container executor compiled without resources. Index entry: docs/compat.md;
canary: tests/test_compat.py `test_step_builder_drops_a_file_based_example_gens_resources`.
"""

from __future__ import annotations

import json


def add_missing(path: str, wanted: dict[str, float]) -> int:
    """Adds ``wanted`` (``cpu_limit``, ``memory_limit``, ``cpu_request``, ``memory_request``,
    as `ClusterConfig.step_resources` gives them) to each container executor of the package
    at ``path`` (``.yaml``: KFP's PipelineSpec; otherwise Vertex's JSON PipelineJob) that was
    compiled without resources. Rewrites the file; returns how many executors it changed."""
    import yaml

    resources = {
        "cpuLimit": wanted["cpu_limit"],
        "memoryLimit": wanted["memory_limit"],
        "cpuRequest": wanted["cpu_request"],
        "memoryRequest": wanted["memory_request"],
    }
    with open(path) as handle:
        document = yaml.safe_load(handle) if path.endswith(".yaml") else json.load(handle)
    spec = document.get("pipelineSpec", document)
    added = 0
    for executor in spec.get("deploymentSpec", {}).get("executors", {}).values():
        container = executor.get("container")
        if container is not None and not container.get("resources"):
            container["resources"] = dict(resources)
            added += 1
    with open(path, "w") as handle:
        if path.endswith(".yaml"):
            yaml.safe_dump(document, handle, sort_keys=False)
        else:
            json.dump(document, handle, indent=2, sort_keys=True)
    return added
