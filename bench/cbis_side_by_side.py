"""The mammography run's figures side by side (docs/results/pretrained.md, cbis): the
PatchTrainer model's malignant AUC on the release's TEST patches (the patch card holds the
eval split's only), P(malignant calcification) + P(malignant mass), with a patient-bootstrap
95% CI, and the pushed whole-image card's test AUC, backbone and weights' provenance.

Usage: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/cbis_side_by_side.py <workdir of a
`breastdx demo --task cbis --variant mammo --workdir <workdir>` run>
"""

import glob
import json
import os
import sys

import numpy as np
import tensorflow as tf
import tf_keras as keras

from breastdx_core import contract, metrics
from components.mammo import export, records

workdir = sys.argv[1]
root = os.path.join(workdir, "pipelines", "breastdx-cbis-mammo")
model_dir = sorted(glob.glob(os.path.join(root, "PatchTrainer", "model", "*", "Format-Serving")))[
    -1
]
card = json.load(open(os.path.join(model_dir, contract.MODEL_CARD_RELPATH)))
size = tuple(card["input_contract"]["model_size"])
test_files = sorted(
    glob.glob(os.path.join(root, "CbisExampleGen", "patches", "*", "Split-test", "*"))
)
model = keras.models.load_model(model_dir, compile=False)
spec = {**records.FEATURES, contract.PATIENT_KEY: tf.io.FixedLenFeature([], tf.string)}
xs, ys, ps = [], [], []
for batch in tf.data.TFRecordDataset(test_files, compression_type="GZIP").batch(64):
    parsed = tf.io.parse_example(batch, spec)
    xs.append(records.decode_grey(parsed[contract.IMAGE_KEY], size).numpy())
    ys.append(parsed[contract.LABEL_KEY].numpy())
    ps.append(parsed[contract.PATIENT_KEY].numpy())
x, y, p = np.concatenate(xs), np.concatenate(ys), np.concatenate(ps)
prob = model.predict(x, batch_size=64, verbose=0)
mal = [contract.CBIS_PATCH_CLASSES.index(n) for n in export.MALIGNANT_PATCH_CLASSES]
score, label = prob[:, mal].sum(1), np.isin(y, mal).astype(int)
auc = metrics.roc_auc(label, score)
ci = metrics.patient_bootstrap(label, score, p)
pushed = sorted(glob.glob(os.path.join(workdir, "serving", "*", "*", contract.MODEL_CARD_RELPATH)))
whole = json.load(open(pushed[-1])) if pushed else {}
out = {
    "backbone": card.get("backbone"),
    "provenance": (card.get("weights_provenance") or {}).get("source"),
    "patch_test_auc": auc,
    "patch_test_ci": ci,
    "patch_test_n": int(len(y)),
    "patch_test_malignant": int(label.sum()),
    "patch_test_patients": int(len(np.unique(p))),
    "patch_eval": card.get("evaluation", {}).get("metrics", {}).get("malignant_auc"),
    "patch_eval_n": card.get("evaluation", {}).get("metrics", {}).get("n"),
    "whole_test_auc": (whole.get("evaluation", {}).get("test") or {}).get("auc"),
    "whole_test_patients": (whole.get("evaluation", {}).get("test") or {}).get("n_patients"),
    "whole_eval_auc": whole.get("evaluation", {}).get("metrics", {}).get("auc"),
    "whole_backbone": whole.get("backbone"),
    "whole_provenance": whole.get("weights_provenance"),
    "patch_seconds": card.get("training_seconds") or card.get("seconds"),
}
print(json.dumps(out, indent=1, default=str))
