"""Patient-stratified split assignment: which split each patient's images go to.

TFX's hash buckets (`BaseExampleGenExecutor._PartitionFn`: SHA-256 of ``patient_id``
modulo the bucket total) keep a patient's images together and are deterministic, but on a
small set they are lumpy: 13 IDC patients in 14:3:3 buckets left one eval patient, too few
to choose a threshold or stop early on. Here the patients are dealt instead, in the order
of the same SHA-256, stratum by stratum (patients holding both classes, only negatives,
only positives), each split getting its bucket share of every stratum (largest
remainders); then, where the data allow, the eval split is topped up from train to
``min_eval`` patients and to both classes. Same tree, same splits; a patient's images
never straddle splits.

Called by ImageExampleGen's executor (`executor.Do`, once, from the paths' labels and
patient ids; the per-image splitter then looks each patient up) and by the tests. Pure
Python, no TensorFlow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

EVAL_SPLIT = "eval"
TRAIN_SPLIT = "train"


def patient_key(patient_id: str) -> int:
    """TFX's partition hash of a patient id (the order patients are dealt in)."""
    return int(hashlib.sha256(patient_id.encode("utf-8")).hexdigest(), 16)


def _stratum(counts: Sequence[int]) -> int:
    """0: both classes (or more), 1: only the negative (first) class, 2: only others."""
    present = [c > 0 for c in counts]
    if sum(present) > 1:
        return 0
    return 1 if present and present[0] else 2


def _quotas(n: int, shares: Sequence[float]) -> list[int]:
    """``n`` split by ``shares`` (largest remainders; ties to the earlier split)."""
    raw = [n * s for s in shares]
    whole = [int(r) for r in raw]
    order = sorted(range(len(shares)), key=lambda i: (-(raw[i] - whole[i]), i))
    for i in order[: n - sum(whole)]:
        whole[i] += 1
    return whole


def assign(
    patients: Mapping[str, Sequence[int]], buckets: Sequence[tuple[str, int]], min_eval: int = 3
) -> tuple[dict[str, int], list[str]]:
    """Each patient's split index (into ``buckets``), and plain-language notes of what the
    data did not allow.

    Args:
        patients: patient id -> images per class (index 0: the negative class).
        buckets: (split name, hash buckets) as the pipeline's split config; a split named
            "eval" gets the top-up.
        min_eval: patients the eval split should hold (0: no top-up).

    Returns:
        ({patient: split index}, notes).
    """
    names = [name for name, _ in buckets]
    total = float(sum(int(b) for _, b in buckets))
    shares = [int(b) / total for _, b in buckets]
    strata: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for patient in sorted(patients, key=lambda p: (patient_key(p), p)):
        strata[_stratum(patients[patient])].append(patient)
    split: dict[str, int] = {}
    for members in strata.values():
        quotas = _quotas(len(members), shares)
        given = [0] * len(buckets)
        for patient in members:
            # The split furthest below its quota takes the next patient in hash order.
            index = max(range(len(buckets)), key=lambda i: (quotas[i] - given[i], -i))
            split[patient] = index
            given[index] += 1
    notes: list[str] = []
    if EVAL_SPLIT not in names or TRAIN_SPLIT not in names or not patients:
        return split, notes
    eval_index, train_index = names.index(EVAL_SPLIT), names.index(TRAIN_SPLIT)

    def members(index: int) -> list[str]:
        return [p for p in sorted(patients, key=lambda p: (patient_key(p), p)) if split[p] == index]

    def holds(index: int, c: int) -> bool:
        return any(patients[p][c] > 0 for p in members(index))

    classes = max(len(c) for c in patients.values())

    def movable() -> list[str]:
        # Train keeps a patient of every class it holds.
        return [
            p
            for p in members(train_index)
            if all(
                any(patients[q][k] > 0 for q in members(train_index) if q != p)
                for k in range(classes)
                if patients[p][k] > 0
            )
        ]

    # Eval first (early stopping, calibration and thresholds read it), then the other
    # held-out splits: both classes first (a threshold needs both), then the patient count;
    # train keeps more patients than the split it gives to.
    held_out = [eval_index] + [i for i in range(len(names)) if i not in (eval_index, train_index)]
    for index in held_out:
        for c in range(classes):
            if not holds(index, c):
                candidates = [p for p in movable() if patients[p][c] > 0]
                if candidates:
                    split[candidates[0]] = index
        while (
            len(members(index)) < min_eval and len(members(train_index)) > len(members(index)) + 1
        ):
            candidates = sorted(
                movable(), key=lambda p: _stratum(patients[p])
            )  # both classes first
            if not candidates:
                break
            split[candidates[0]] = index
        n_held = len(members(index))
        if min_eval and n_held < min_eval:
            notes.append(
                f"{names[index]} split: {n_held} patient(s), fewer than the {min_eval} asked: "
                f"{len(patients)} patients are too few to give it more without emptying train"
            )
        missing = [c for c in range(classes) if not holds(index, c)]
        if missing:
            notes.append(
                f"{names[index]} split: no images of class index {', '.join(map(str, missing))}: "
                "no patient outside it holds that class but train's last one"
            )
    return split, notes
