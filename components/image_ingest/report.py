"""The ingest report: every input file, ingested or skipped with its reason.

ImageIngest's executor calls `build()` on the per-file outcomes and writes the result
as ``ingest_report.json`` and, through `render_markdown()`, ``ingest_report.md`` beside
the TFRecords. The CLI's end-of-run table reads the JSON back.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from components.image_ingest.layouts import REASONS

REPORT_JSON = "ingest_report.json"
REPORT_MD = "ingest_report.md"


class Outcome(NamedTuple):
    """What happened to one file (or manifest row)."""

    rel: str
    ingested: bool
    reason: str = ""  # a key of layouts.REASONS when skipped
    detail: str = ""
    label: int = -1
    patient_id: str = ""
    size: str = ""  # "HxW" of an ingested image
    sha256: str = ""  # hex digest of the file's bytes (also the record's ``image_sha256``)


def build(
    outcomes: Iterable[Outcome], class_names: Sequence[str], meta: dict[str, Any]
) -> dict[str, Any]:
    """Aggregates outcomes into the report dict (JSON-ready; ``meta`` is copied in)."""
    outcomes = sorted(outcomes, key=lambda o: o.rel)
    by_reason: dict[str, int] = collections.Counter()
    by_class: dict[str, int] = collections.Counter({name: 0 for name in class_names})
    per_patient: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.Counter())
    sizes: dict[str, int] = collections.Counter()
    skipped: list[dict[str, str]] = []
    for o in outcomes:
        if o.ingested:
            name = class_names[o.label]
            by_class[name] += 1
            per_patient[o.patient_id][name] += 1
            sizes[o.size] += 1
        else:
            by_reason[o.reason] += 1
            skipped.append({"path": o.rel, "reason": o.reason, "detail": o.detail})
            if o.patient_id:
                per_patient[o.patient_id]["skipped"] += 1
    ingested = sum(by_class.values())
    report = dict(meta)
    report.update(
        {
            "entries": len(outcomes),
            "ingested": ingested,
            "skipped": len(skipped),
            "ingested_by_class": dict(by_class),
            "skipped_by_reason": dict(sorted(by_reason.items())),
            "patients": sum(
                1 for counts in per_patient.values() if any(counts[n] for n in class_names)
            ),
            "per_patient": {pid: dict(counts) for pid, counts in sorted(per_patient.items())},
            "image_sizes": dict(sizes.most_common()),
            "skipped_files": skipped,
            # every ingested file's content hash: duplicates across data sets can be found later
            "content_sha256": {o.rel: o.sha256 for o in outcomes if o.ingested and o.sha256},
        }
    )
    report["class_warnings"] = class_warnings(report["per_patient"], class_names)
    return report


def class_warnings(per_patient: dict[str, dict[str, int]], class_names: Sequence[str]) -> list[str]:
    """A class whose images all come from one patient (or none): its split holds the whole
    class, so no other split can train on or measure it."""
    notes = []
    for name in class_names:
        holders = {
            pid: counts.get(name, 0) for pid, counts in per_patient.items() if counts.get(name, 0)
        }
        if not holders:
            notes.append(f"class {name!r}: no images ingested")
        elif len(holders) == 1 and len(per_patient) > 1:
            [(pid, n)] = holders.items()
            notes.append(
                f"class {name!r}: all {n} images come from one patient ({pid}); the split that holds "
                "this patient holds the whole class, so the others can neither learn nor measure it"
            )
    return notes


def duplicate_lines(duplicates: dict[str, Any], max_listed: int = 20) -> list[str]:
    """Plain-language lines for `layouts.deduplicate`'s summary (the report and the
    run summary print them)."""
    if not duplicates:
        return []
    lines = []
    conflicts = duplicates.get("label_conflicts", [])
    if conflicts:
        lines.append(
            f"{len(conflicts)} label conflict(s): the same image under two labels; every copy left out:"
        )
        lines += [
            f"  {' = '.join(c['files'])} (labels {c['labels']})" for c in conflicts[:max_listed]
        ]
    cross = duplicates.get("cross_patient", [])
    if cross:
        lines.append(
            f"{len(cross)} image(s) duplicated across patients; one copy kept so no image is in two splits:"
        )
        lines += [
            f"  kept {c['kept']}, left out {', '.join(c['left_out'])}" for c in cross[:max_listed]
        ]
    if duplicates.get("same_patient_copies"):
        lines.append(
            f"{duplicates['same_patient_copies']} same-patient copies kept (one split group)"
        )
    return lines


def render_markdown(report: dict[str, Any], max_listed: int = 50) -> str:
    """A readable summary of a report made by `build()`."""
    lines = [
        "# Ingest report",
        "",
        f"- image root: `{report.get('image_root', '?')}` (layout: {report.get('layout', '?')}, "
        f"task: {report.get('task', '?')}, validation: {report.get('validation', '?')})",
        f"- entries: **{report['entries']}** = ingested **{report['ingested']}** + skipped **{report['skipped']}**",
        f"- patients with images: {report['patients']}",
        "",
        "| class | images |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {n} |" for name, n in report["ingested_by_class"].items()]
    if report["skipped_by_reason"]:
        lines += ["", "| skipped because | files | meaning |", "| --- | ---: | --- |"]
        lines += [
            f"| {r} | {n} | {REASONS.get(r, '')} |" for r, n in report["skipped_by_reason"].items()
        ]
        lines += [
            "",
            f"## Skipped files{f' (first {max_listed})' if report['skipped'] > max_listed else ''}",
            "",
        ]
        lines += [
            f"- `{s['path']}`: {s['reason']} ({s['detail']})"
            for s in report["skipped_files"][:max_listed]
        ]
    if report.get("class_warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["class_warnings"]]
    duplicates = duplicate_lines(report.get("duplicates", {}))
    if duplicates:
        lines += ["", "## Duplicates (same SHA-256)", ""] + [
            f"- {line.strip()}" for line in duplicates
        ]
    if report.get("split_method"):
        lines += ["", f"Splits: {report['split_method']}."]
        lines += [f"- {note}" for note in report.get("split_notes") or []]
    sizes = report.get("image_sizes", {})
    if sizes:
        lines += [
            "",
            "Image sizes (HxW): " + ", ".join(f"{k}: {v}" for k, v in list(sizes.items())[:8]),
        ]
    return "\n".join(lines) + "\n"
