"""The mammography variant at the command line: what `breastdx demo --variant mammo`
prints after the pipeline, and the study's full-size settings.

`breastdx_cli/main.py` imports this module (no call-back into it): `full_size_settings()` for
``demo --full-size`` and `print_summary(config)` after a mammography run. The former
``mammo-demo`` and ``segment-demo`` verbs are ``demo --variant mammo|segment`` now:
one pipeline each, through `create_pipeline`.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional

log = logging.getLogger("breastdx")


def full_size_settings() -> Dict[str, Any]:
    """The study's sizes and schedules (Shen et al. 2019) as PipelineConfig overrides."""
    from breastdx_core import contract
    from components.mammo import models

    return {"mammo_image_size": tuple(contract.CBIS_IMAGE_SIZE), "mammo_patch_size": contract.CBIS_PATCH_SIZE,
            "mammo_heatmap_stride": contract.CBIS_PATCH_SIZE // 4,
            "mammo_patch_schedule": models.format_schedule(models.PATCH_SCHEDULE),
            "mammo_whole_schedule": models.format_schedule(models.WHOLE_SCHEDULE)}


def latest_pushed(config) -> Optional[str]:
    """The newest version folder under ``<serving_root>/<model_name>`` (None: nothing pushed)."""
    from components.baseline_evaluator import newest_version

    return newest_version(os.path.join(config.serving_root, config.model_name))


def write_heatmap(config, version_dir: str, card: Dict[str, Any]) -> Optional[str]:
    """Calls the pushed model's ``heatmap`` signature on the first mammogram of the
    release's test split and saves the malignancy overlay beside the workdir's logs;
    returns the PNG's path (None when the release has no test mammogram)."""
    import numpy as np
    import tensorflow as tf

    from components.mammo import records
    from breastdx_core import contract
    from components.mammo import cbis, heatmap, images

    abnormalities, _ = cbis.read_release(config.data_root)
    tests = [m for m in cbis.mammograms(abnormalities) if m.split == "test"]
    if not tests:
        return None
    with open(tests[0].image_path, "rb") as handle:
        encoded = handle.read()
    model = tf.saved_model.load(version_dir)
    signature = card["input_contract"]["heatmap_signature"]
    grid = model.signatures[signature](**{contract.SERVING_INPUT_BYTES: tf.constant([encoded])})
    grid = grid[records.OUTPUT_HEATMAP].numpy()[0]
    size, patch, stride = card["image_size"], int(card["patch_size"]), int(card["heatmap_stride"])
    image = images.resize_keep_aspect(images.read_image(tests[0].image_path), size).numpy()
    rows, cols = np.arange(grid.shape[0]) * stride, np.arange(grid.shape[1]) * stride
    score = heatmap.malignant_map(heatmap.to_image_grid(grid, rows, cols, patch, image.shape))
    path = os.path.join(config.workdir, "cbis", f"heatmap_{tests[0].image_id}.png")
    images.save_png(path, heatmap.render_overlay(image, score * (image > 0.1)))
    np.save(path[:-4] + ".npy", grid)
    return path


def _ci_text(metric: Optional[Dict[str, Any]]) -> str:
    """"0.812 [0.700-0.900], n=40" from a report metric ({value, n, ci95}); "n/a" without a value."""
    metric = metric or {}
    value, ci = metric.get("value"), metric.get("ci95") or {}
    if value is None:
        return f"n/a (n={metric.get('n')})"
    interval = (f" [{ci['low']:.3f}-{ci['high']:.3f}]" if ci.get("low") is not None and ci.get("high") is not None
                else " [CI n/a]")
    return f"{value:.3f}{interval}, n={metric.get('n')}"


def print_summary(config) -> int:
    """What the mammography run produced, from the pushed model's card (completed by the
    EvaluationReport component); 1 when the Evaluator did not bless the model (nothing pushed)."""
    from breastdx_core import contract, model_card

    version_dir = latest_pushed(config)
    if version_dir is None:
        print(f"not pushed: the whole-image model did not reach the Evaluator's AUC floor "
              f"({config.mammo_min_whole_auc}); see the log")
        return 1
    card = model_card.read(os.path.join(version_dir, contract.MODEL_CARD_RELPATH))
    evaluation = card.get("evaluation", {})
    whole, test = evaluation.get("metrics", {}), evaluation.get("test") or {}
    patch = card.get("patch_model", {}).get("evaluation", {}).get("metrics", {})
    rule = card.get("decision_rule") or {}
    from pipeline.summary import weights_text

    print(f"backbone       {weights_text(card.get('backbone'), card.get('weights_provenance'))}")
    print(f"patch model    eval accuracy {patch.get('accuracy')} (5 classes, n={patch.get('n')}), "
          f"malignant AUC {patch.get('malignant_auc')}")
    print(f"whole image    eval AUC {whole.get('auc')} (Evaluator, n={evaluation.get('n_images')} mammograms, "
          f"{evaluation.get('n_patients')} patients held out of the release's train split)")
    print(f"held-out test  AUC {_ci_text(test.get('auc'))} mammograms, {test.get('n_patients')} patients "
          f"(the release's test split; 95% CI by patient bootstrap)")
    operating = test.get("at_operating") or {}
    threshold = rule.get("operating_threshold")
    print(f"               at the operating threshold {'n/a' if threshold is None else f'{threshold:.4g}'} "
          f"(chosen on eval): "
          f"sensitivity {_ci_text(operating.get('sensitivity'))}, "
          f"specificity {_ci_text(operating.get('specificity'))}")
    why = ("coverage claimed" if rule.get("kind") == "conformal"
           else (rule.get("conformal") or {}).get("reason"))
    print(f"decision rule  {rule.get('kind')} ({why})")
    for warning in card.get("small_sample_warnings") or []:
        print(f"warning        {warning}")
    print(f"pushed         {version_dir} (signatures: serving_default, serving_examples, "
          f"{card['input_contract'].get('heatmap_signature')})")
    report = (card.get("evaluation_report") or {}).get("html")
    if report:
        print(f"report         {os.path.join(version_dir, report)}")
    heatmap_png = write_heatmap(config, version_dir, card)
    if heatmap_png:
        print(f"heatmap        {heatmap_png}")
    if evaluation.get("synthetic_data"):
        print("Metrics on SYNTHETIC data: they show the pipeline works, not how a model does on mammograms.")
    print(contract.RESEARCH_ONLY)
    return 0
