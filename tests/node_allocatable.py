"""What a GKE node of a machine type offers to pods (its allocatable), from GKE's
documented reservations, for the scheduling checks of tests/test_kubeflow_runner.py and
tests/test_deploy_manifests.py.

GKE reserves, per node (cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes):
- CPU: 6 % of the first core, 1 % of the next, 0.5 % of the next two, 0.25 % above four;
- memory: 25 % of the first 4 GiB, 20 % of the next 4, 10 % of the next 8, 6 % of the
  next 112, 2 % above 128 GiB, plus 100 MiB for kubelet eviction.
System DaemonSets (kube-proxy, logging and metrics agents, the GPU device plugin, CSI)
request some of that; :data:`SYSTEM_PODS` is a conservative allowance for them.
"""

from __future__ import annotations

GIB = 1024**3
GB = 1000**3  # KFP / Vertex resource specs count memory in GB (10^9 bytes)

# machine type: (vCPU, memory GiB)
MACHINE_TYPES: dict[str, tuple[int, float]] = {
    "n1-standard-4": (4, 15.0),
    "n1-standard-8": (8, 30.0),
    "n1-standard-16": (16, 60.0),
    "n1-highmem-8": (8, 52.0),
    "g2-standard-8": (8, 32.0),
}
SYSTEM_PODS = {"cpu": 0.4, "memory_bytes": 1 * GIB}


def allocatable(machine_type: str) -> dict[str, float]:
    """{"cpu": vCPU, "memory_bytes": bytes} a pod may request on an empty node, after
    GKE's reservations and the system DaemonSets."""
    cpus, memory_gib = MACHINE_TYPES[machine_type]
    cpu_reserved = (
        0.06
        + (0.01 if cpus > 1 else 0)
        + 0.005 * min(max(cpus - 2, 0), 2)
        + 0.0025 * max(cpus - 4, 0)
    )
    tiers = [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (float("inf"), 0.02)]
    left, memory_reserved = memory_gib, 0.0
    for size, share in tiers:
        part = min(left, size)
        memory_reserved += part * share
        left -= part
        if left <= 0:
            break
    memory = (memory_gib - memory_reserved) * GIB - 100 * 1024**2
    return {
        "cpu": cpus - cpu_reserved - SYSTEM_PODS["cpu"],
        "memory_bytes": memory - SYSTEM_PODS["memory_bytes"],
    }
