"""The HTML blueprint: upload page, results, versions (pick one or go back to the newest).

Registered by ``webapp.create_app``. Forms carry CSRF tokens (flask-wtf). The pinned
version is per browser session: the next predictions go to that version's URL on the
model server (``/v1/models/{name}/versions/{v}:predict``).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from breastdx_core import model_card
from webapp import answers, audit, kinds, service
from webapp.clients import HTTP_BAD_REQUEST, HTTP_NOT_FOUND, PredictionError

log = logging.getLogger(__name__)

bp = Blueprint("ui", __name__)
PIN_KEY = "pinned_version"


@bp.app_context_processor
def navigation():
    """The endpoints the navbar may link to (the slide viewer's pages where it is registered)."""
    return {"nav_endpoints": current_app.view_functions.keys()}


def served_card(version: str | None) -> dict[str, Any]:
    """The card of ``version`` (the newest when None); ``{}`` when the server cannot say, so a
    page that only describes the model still opens while the server is down."""
    try:
        return kinds.served_card(version)[1]
    except PredictionError as err:
        log.warning("no model card for the home page: %s", err.message)
        return {}


def card_context(card: dict[str, Any]) -> dict[str, Any]:
    """What every page that shows a model's answers or metrics needs from its card."""
    return {
        "rule_lines": answers.rule_in_words(card),
        "synthetic_note": answers.synthetic_note([card]),
        "card": card,
    }


@bp.get("/")
def index():
    pinned = session.get(PIN_KEY)
    card = served_card(pinned)
    return render_template(
        "index.html", pinned=pinned, scope=answers.scope(card), **card_context(card)
    )


@bp.post("/")
def predict():
    uploads, refusals = service.collect_batch(request.files.getlist("file"))
    service.require_some(uploads, refusals)
    pinned = session.get(PIN_KEY)
    try:
        kind, results = kinds.predict_any(uploads, pinned, with_overlay=True)
    except PredictionError as err:
        if pinned is None or err.status != HTTP_NOT_FOUND:
            raise
        session.pop(
            PIN_KEY, None
        )  # the pinned version was unloaded: say so, follow the newest again
        raise PredictionError(
            f"version {pinned} is no longer served, so this session follows the newest "
            f"version again; upload the images once more ({err.message})",
            HTTP_NOT_FOUND,
        ) from None
    audit.record([u.data for u in uploads], results, "ui")
    template = "segmentation.html" if kind == kinds.KIND_SEGMENTATION else "results.html"
    version = next((r.get("model_version") for r in results if r.get("model_version")), None)
    card = service.card_for(version)
    return render_template(
        template,
        results=results,
        refusals=[r.as_dict() for r in refusals],
        pinned=session.get(PIN_KEY),
        **card_context(card),
    )


@bp.get("/versions")
def versions():
    rows = service.client().versions()
    return render_template(
        "versions.html",
        versions=rows,
        pinned=session.get(PIN_KEY),
        synthetic_note=answers.synthetic_note([v.card for v in rows]),
        is_synthetic=answers.is_synthetic,
        model_name=service.client().model_name,
        headline=model_card.headline_metrics,
        metric_labels=[label for _, label in model_card.HEADLINE_METRICS],
    )


@bp.post("/versions")
def pin():
    """Pins the form's ``version`` for this session; an empty value follows the newest again."""
    wanted = (request.form.get("version") or "").strip()
    if not wanted:
        session.pop(PIN_KEY, None)
        flash("Following the newest version.", "info")
        return redirect(url_for("ui.versions"))
    served = {v.version for v in service.client().versions()}
    if wanted not in served:
        raise PredictionError(
            f"version {wanted[:40]!r} is not served; served: {', '.join(sorted(served)) or 'none'}",
            HTTP_BAD_REQUEST,
        )
    session[PIN_KEY] = wanted
    flash(f"Predictions now use version {wanted}.", "info")
    return redirect(url_for("ui.versions"))


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}
