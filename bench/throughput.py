"""Training throughput of VGG16 at the seed study's 224x224 input against the project's 64x64.

    python bench/throughput.py [--sizes 64 224] [--steps 4] [--auc-steps 0]

Same model builder as the Trainer (components/trainer/model.py `build_model`, the
pipeline's default head, optimizer and batch size from breastdx_core/configs.py), same
synthetic IDC patches (pipeline/synthetic.py), decoded and fitted to each size by the
Transform module's own `decode_image` (50x50 patches padded to their native size, then
resized). The images are decoded once, before timing: the figures are the model's
train-step and predict throughput, not the input pipeline's. Per size: one warm-up step
(graph tracing), then ``--steps`` timed `train_on_batch` steps and as many timed
`predict_on_batch` calls; images/s = steps x batch / seconds.

With ``--auc-steps K`` both sizes also train K steps from the same initial seed on
the same patients' patches and are scored on held-out patients: ROC AUC with a 95 %
patient-bootstrap CI (synthetic data: a check that the small input loses nothing on
this data at equal steps, not a claim about real tissue).
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NATIVE = (50, 50)


def ratio(rates: Dict[int, float], fast: int, slow: int) -> float:
    """How many times more images/s size ``fast`` gives than size ``slow``."""
    return rates[fast] / rates[slow]


def patches(patients: int, per_patient: int, seed: int) -> Tuple[List[bytes], np.ndarray, List[str]]:
    """Encoded synthetic H&E patches (PNG bytes), labels and patient ids; ~28 % positive."""
    from PIL import Image

    from pipeline import synthetic

    encoded, labels, groups = [], [], []
    for p in range(patients):
        rng = np.random.default_rng([seed, p])
        for _ in range(per_patient):
            label = int(rng.random() < synthetic.POSITIVE_RATE)
            buffer = io.BytesIO()
            Image.fromarray(synthetic.render_patch(rng, bool(label))).save(buffer, format="PNG")
            encoded.append(buffer.getvalue())
            labels.append(label)
            groups.append(f"p{seed}-{p}")
    return encoded, np.array(labels, dtype=np.int64), groups


def decode(encoded: Sequence[bytes], size: int) -> np.ndarray:
    """The Transform module's decode + fit for every image: float32 [n, size, size, 3] in [0, 1]."""
    import tensorflow as tf

    from components.transform.transform_module import decode_image

    return np.stack([decode_image(tf.constant(e), (size, size), NATIVE).numpy() for e in encoded])


def build(size: int, seed: int):
    import tensorflow as tf

    from breastdx_core import configs
    from components.trainer import model as model_lib

    tf.keras.utils.set_random_seed(seed)
    config = configs.load(env={}).trainer_config()
    config["model_size"] = [size, size]
    return model_lib.build_model(config), int(config["batch_size"])


def throughput(size: int, steps: int, images: np.ndarray, labels: np.ndarray, seed: int) -> Dict[str, float]:
    model, batch = build(size, seed)
    x, y = images[:batch], labels[:batch]
    started = time.perf_counter()
    model.train_on_batch(x, y)  # tracing + the first step
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    train_s = time.perf_counter() - started
    model.predict_on_batch(x)
    started = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    predict_s = time.perf_counter() - started
    return {"batch": batch, "first_step_s": first, "step_s": train_s / steps,
            "train_ips": steps * batch / train_s, "predict_ips": steps * batch / predict_s,
            "params": float(model.count_params())}


def auc_at_steps(size: int, steps: int, train: Tuple[np.ndarray, np.ndarray], test: Tuple[np.ndarray, np.ndarray],
                 test_groups: List[str], seed: int) -> Dict[str, float]:
    from breastdx_core import metrics

    model, batch = build(size, seed)
    x, y = train
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(steps):
        pick = rng.integers(0, len(y), batch)
        model.train_on_batch(x[pick], y[pick])
    train_s = time.perf_counter() - started
    scores = model.predict(test[0], batch_size=batch, verbose=0)[:, 1]
    ci = metrics.patient_bootstrap(test[1], scores, test_groups, resamples=1000, seed=seed)
    return {"auc": metrics.roc_auc(test[1], scores), "low": ci["low"] if ci else float("nan"),
            "high": ci["high"] if ci else float("nan"), "train_s": train_s, "n_test": len(test[1]),
            "test_patients": len(set(test_groups))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--steps", type=int, default=4, help="timed train steps (and predict calls) per size")
    parser.add_argument("--auc-steps", type=int, default=0, help="also train this many steps per size and score AUC")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    import tensorflow as tf

    encoded, labels, _ = patches(patients=4, per_patient=16, seed=args.seed)
    print(f"VGG16, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, threads intra "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    for size in args.sizes:
        results[size] = throughput(size, args.steps, decode(encoded, size), labels, args.seed)
        r = results[size]
        print(f"  {size}x{size}: step {r['step_s']:.2f} s, train {r['train_ips']:.1f} images/s, "
              f"predict {r['predict_ips']:.1f} images/s (first step {r['first_step_s']:.1f} s)", flush=True)
    print(f"\n| input | batch | s/step | train images/s | predict images/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for size, r in results.items():
        print(f"| {size}x{size} | {r['batch']} | {r['step_s']:.2f} | {r['train_ips']:.1f} | {r['predict_ips']:.1f} |")
    if len(results) >= 2:
        small, large = min(results), max(results)
        print(f"\n{small} px vs {large} px: {ratio({s: r['train_ips'] for s, r in results.items()}, small, large):.1f}x "
              f"train images/s, {ratio({s: r['predict_ips'] for s, r in results.items()}, small, large):.1f}x "
              f"predict images/s (pixels: {(large / small) ** 2:.1f}x)")
    if args.auc_steps:
        train_x, train_y, _ = patches(patients=24, per_patient=24, seed=args.seed + 1)
        test_x, test_y, test_groups = patches(patients=12, per_patient=25, seed=args.seed + 2)
        print(f"\nAUC after {args.auc_steps} steps (synthetic: {len(train_y)} train patches of 24 patients, "
              f"{len(test_y)} test patches of 12 other patients)")
        print("| input | AUC | 95 % CI (patient bootstrap) | training wall |")
        print("| --- | ---: | ---: | ---: |")
        for size in args.sizes:
            r = auc_at_steps(size, args.auc_steps, (decode(train_x, size), train_y), (decode(test_x, size), test_y),
                             test_groups, args.seed)
            print(f"| {size}x{size} | {r['auc']:.3f} | {r['low']:.3f}–{r['high']:.3f} | {r['train_s']:.0f} s |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
