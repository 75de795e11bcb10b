"""What a person reads: one sentence per answer, the decision rule in plain words, the
model's scope and the synthetic-data banner.

``webapp.service.describe`` adds :func:`sentence` to every result; the templates show
:func:`rule_in_words`, :func:`scope` and :func:`synthetic_note` (``webapp.ui`` and
``webapp.wholeslide`` pass them). The model card (breastdx_core/model_card.py) is the only
source: its ``decision_rule``, ``input_contract``, ``task`` and ``evaluation``. The numbers
behind a refusal (OOD score, distances) stay in the JSON API and in a "details" line; the
sentence says what they mean. Pure Python: no TensorFlow.
"""

from __future__ import annotations

import re
from typing import Any

from breastdx_core import contract

# What each task's model reads, for "Not assessed: not <noun>" and the home page.
TASK_NOUNS = {
    "idc": "an H&E patch of breast tissue",
    "busi": "a breast ultrasound image",
    "cbis": "a mammogram patch",
}
FALLBACK_NOUN = "an image like the training images"
# The IDC patches' provenance (Janowczyk & Madabhushi): what the card's 50x50 px means on a slide.
SCOPE_NOTES = {
    "idc": (
        "The model reads 50 × 50-pixel patches of H&E-stained breast tissue at 2.5× "
        "(cut from whole-mount slides scanned at 40×, as in the Kaggle IDC set) and answers "
        "whether the patch shows invasive ductal carcinoma."
    ),
    "busi": "The model reads breast ultrasound images and answers normal, benign or malignant.",
    "cbis": "The model reads patches of film mammograms (CBIS-DDSM).",
}
SYNTHETIC_TEXT = (
    "This model was trained and evaluated on SYNTHETIC images: its answers and its metrics "
    "say nothing about real tissue."
)
_NUMBERS_IN_BRACKETS = re.compile(r"\s*\((?:distance|OOD score)[^)]*\)")


def task_of(card: dict[str, Any]) -> str:
    task = str((card or {}).get("task") or "")
    return task if task in contract.TASKS else ""


def noun(card: dict[str, Any]) -> str:
    return TASK_NOUNS.get(task_of(card), FALLBACK_NOUN)


def is_synthetic(card: dict[str, Any]) -> bool:
    """Whether the card says its model was trained and evaluated on synthetic data."""
    card = card or {}
    for holder in (card.get("evaluation"), card.get("evaluation_report"), card):
        if isinstance(holder, dict) and holder.get("synthetic_data") is True:
            return True
    return False


def synthetic_note(cards: list[dict[str, Any]]) -> str | None:
    """The banner's text when any of ``cards`` is synthetic, else None."""
    return SYNTHETIC_TEXT if any(is_synthetic(c) for c in cards) else None


def _percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def plain_reason(decided: dict[str, Any], card: dict[str, Any]) -> str:
    """Why an image was not assessed, in words (numbers left to :func:`technical_reason`)."""
    rule = decided.get("rule") or ""
    if rule == "OOD threshold":
        return "the model's own features for it are unlike those of any training image"
    reason = decided.get("reason") or decided.get("text") or "it is unlike the training images"
    reason = _NUMBERS_IN_BRACKETS.sub("", str(reason))
    return (
        reason[len("not assessed: ") :] if reason.lower().startswith("not assessed: ") else reason
    )


def technical_reason(decided: dict[str, Any], card: dict[str, Any]) -> str | None:
    """The measured numbers behind a refusal, as a sentence (shown under "details")."""
    rule = decided.get("rule") or ""
    score = decided.get("ood_score")
    ood = ((card or {}).get("decision_rule") or {}).get("ood") or {}
    if rule == "OOD threshold" and score is not None and ood.get("threshold") is not None:
        rate = ood.get("false_alarm_rate")
        tail = (
            f" (a limit that flags {_percent(rate)} of ordinary eval images)"
            if rate is not None
            else ""
        )
        return (
            f"feature distance {float(score):.1f}; the limit is {float(ood['threshold']):.1f}{tail}"
        )
    match = re.search(
        r"\(distance ([\d.]+); the farthest accepted is ([\d.]+)\)",
        str(decided.get("reason") or ""),
    )
    if match:
        return f"colour and texture distance {match[1]}; the limit is {match[2]}"
    return None


def sentence(result: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The one sentence a person reads for a classifier's answer, and its tone.

    Returns:
        {"text": "IDC-positive, 0.93" | "Uncertain: refer to a pathologist — both classes
        plausible at 95 %" | "Not assessed: not an H&E patch of breast tissue (reason)",
        "tone": positive | negative | uncertain | not_assessed, "details": numbers or None}.
    """
    decided = result.get("decision") or {}
    status = result.get("status")
    if status == "not_assessed":
        return {
            "text": f"Not assessed: not {noun(card)} ({plain_reason(decided, card)})",
            "tone": "not_assessed",
            "details": technical_reason(decided, card),
        }
    conformal = ((card or {}).get("decision_rule") or {}).get("conformal") or {}
    coverage = conformal.get("coverage")
    at = f" at {_percent(coverage)}" if coverage else ""
    if status == "uncertain":
        members = list(result.get("prediction_set") or [])
        names = (card or {}).get("class_names") or list((result.get("probabilities") or {}).keys())
        if not members:
            why = f"no class is plausible enough{at}"
        elif len(members) == len(names) == 2:
            why = f"both classes plausible{at}"
        else:
            why = f"{' and '.join(members)} all plausible{at}"
        return {
            "text": f"Uncertain: refer to a pathologist — {why}",
            "tone": "uncertain",
            "details": None,
        }
    called = result.get("class_name")
    positive = result.get("positive_class")
    tone = "positive" if positive and called == positive else "negative"
    probability = result.get("probability")
    if probability is None:
        return {"text": str(called), "tone": tone, "details": None}
    if probability < 0.5 and positive and result.get("positive_probability") is not None:
        # A threshold rule can call a class whose probability is below one half: say why.
        threshold = ((card or {}).get("decision_rule") or {}).get("operating_threshold")
        side = "below" if called != positive else "at or above"
        limit = (
            f" the threshold {float(threshold):.2f}" if threshold is not None else " the threshold"
        )
        return {
            "text": (
                f"{called}: P({positive}) = {result['positive_probability']:.2f} is {side}{limit}"
            ),
            "tone": tone,
            "details": None,
        }
    return {"text": f"{called}, {probability:.2f}", "tone": tone, "details": None}


def rule_in_words(card: dict[str, Any]) -> list[str]:
    """The card's decision rule as two or three plain sentences (empty without a rule)."""
    rule = (card or {}).get("decision_rule")
    if not isinstance(rule, dict):
        return []
    lines = []
    accepted = (card.get("input_contract") or {}).get("accepted")
    ood = rule.get("ood") or {}
    checks = []
    if accepted:
        checks.append(
            "its size, channels, colours and texture (the input contract, measured on the "
            "training images)"
        )
    if ood.get("threshold") is not None:
        rate = ood.get("false_alarm_rate")
        flagged = (
            f", a check that also flags about {_percent(rate)} of ordinary images"
            if rate is not None
            else ""
        )
        checks.append(
            "how far the model's own features for it lie from those of the training "
            f"images{flagged}"
        )
    if checks:
        lines.append(
            f"First the app checks that the image is {noun(card)} "
            "like those the model was trained on: "
            + "; and ".join(checks)
            + ". An image that fails is not assessed."
        )
    names = list(rule.get("class_names") or card.get("class_names") or [])
    conformal = rule.get("conformal") or {}
    if rule.get("kind") == "conformal" and conformal.get("min_probability"):
        levels = ", ".join(
            f"{name} from {conformal['min_probability'][name]:.3g}"
            for name in names
            if conformal["min_probability"].get(name) is not None
        )
        lines.append(
            f"A class counts as plausible when its probability reaches the level that kept "
            f"{_percent(conformal.get('coverage', 0.95))} of that class's "
            f"{conformal.get('calibrated_on', 'calibration')} images ({levels}). "
            "When exactly one class is plausible it is the answer; when "
            + ("both" if len(names) == 2 else "two or more")
            + " (or none) are, the model cannot tell, and the image goes to a pathologist."
        )
    elif rule.get("operating_threshold") is not None and rule.get("positive_class"):
        why = (conformal.get("reason") or "") if isinstance(conformal, dict) else ""
        lines.append(
            f"The model calls {rule['positive_class']} "
            f"when P({rule['positive_class']}) is at least "
            f"{float(rule['operating_threshold']):.2f}; no coverage is claimed"
            + (f" ({why})" if why else "")
            + "."
        )
    else:
        lines.append("The answer is the most probable class.")
    return lines


def scope(card: dict[str, Any]) -> dict[str, Any]:
    """What the served model reads, for the home page: {"text", "sizes", "intended_use"}."""
    card = card or {}
    task = task_of(card)
    text = SCOPE_NOTES.get(task) or (contract.TASKS[task].description if task else "")
    accepted = (card.get("input_contract") or {}).get("accepted") or {}
    sizes = None
    if accepted.get("width") and accepted.get("height"):
        (w_lo, w_hi), (h_lo, h_hi) = accepted["width"], accepted["height"]
        sizes = f"{w_lo}–{w_hi} × {h_lo}–{h_hi} pixels"
    intended = str(card.get("intended_use") or "").replace(contract.RESEARCH_ONLY, "").strip()
    return {"text": text, "sizes": sizes, "intended_use": intended or None, "task": task}
