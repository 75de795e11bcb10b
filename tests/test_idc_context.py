"""Slide context, F1 at a reference prevalence, operating-threshold rules, patient-stratified
splits, the CPU-time budget, test-time augmentation and the in-model resize: fast checks
on synthetic inputs (breastdx_core/slide_context.py, breastdx_core/metrics.py,
components/evaluation/statistics.py, components/image_ingest/splits.py,
components/trainer/{training,export,model}.py)."""

import time

import numpy as np
import pytest

from breastdx_core import metrics, slide_context
from components.evaluation import statistics
from components.image_ingest import splits

BUCKETS = [("train", 14), ("eval", 3), ("test", 3)]


# --- slide context ------------------------------------------------------------------------
def _slide(seed=0, size=12, noise=0.35):
    """One slide: a tumour disc in a grid of patches; per-patch scores = truth + noise."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    truth = ((gx - size / 2) ** 2 + (gy - size / 2) ** 2 < (size / 3.5) ** 2).astype(int).ravel()
    scores = np.clip(truth * 0.6 + 0.2 + rng.normal(0, noise, truth.size), 0, 1)
    return truth, scores, gx.ravel() * 50 + 1, gy.ravel() * 50 + 1


def test_patch_xy_reads_idc_names_and_nothing_else():
    assert slide_context.patch_xy("8863/1/8863_idx5_x1001_y1051_class1.png") == (1001, 1051)
    assert slide_context.patch_xy("benign (12).png") is None


def test_smoothing_lowers_an_isolated_false_positive_and_keeps_a_region():
    probs = np.zeros(25)
    xs, ys = np.repeat(np.arange(5), 5) * 50, np.tile(np.arange(5), 5) * 50
    probs[12] = 1.0  # a lone positive in the middle of negatives
    smooth = slide_context.slide_context(probs, xs, ys, sigma=1.0)
    assert smooth[12] < 0.5 and smooth[11] > 0
    region = (xs <= 100).astype(float)  # the left three columns positive
    kept = slide_context.slide_context(region, xs, ys, sigma=1.0)
    assert kept[xs == 0].min() > 0.8 and kept[xs == 200].max() < 0.2
    assert np.array_equal(slide_context.slide_context(probs, xs, ys, sigma=0), probs)


def test_slides_do_not_bleed_into_each_other():
    xs, ys = np.array([0, 50, 0, 50]), np.zeros(4)
    smooth = slide_context.slide_context(
        [1, 1, 0, 0], xs, ys, groups=["a", "a", "b", "b"], sigma=2.0
    )
    assert np.allclose(smooth, [1, 1, 0, 0])


def test_slide_context_improves_noisy_clustered_scores_and_sigma_is_chosen_on_eval():
    truth, scores, xs, ys = _slide(seed=1)
    chosen = slide_context.choose_sigma(truth, scores, xs, ys, ["p"] * len(truth))
    assert chosen["sigma"] > 0 and chosen["auc"][chosen["sigma"]] > chosen["auc"][0.0]
    test_truth, test_scores, tx, ty = _slide(seed=2)  # another slide, the width carried over
    smooth = slide_context.slide_context(test_scores, tx, ty, sigma=chosen["sigma"])
    assert metrics.roc_auc(test_truth, smooth) > metrics.roc_auc(test_truth, test_scores)


def test_slide_context_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one entry per patch"):
        slide_context.slide_context([0.1, 0.2], [0], [0])
    with pytest.raises(ValueError, match="sigma"):
        slide_context.slide_context([0.1], [0], [0], sigma=-1)


# --- F1 at the references' prevalence, operating thresholds --------------------------------
def test_f1_at_prevalence_reweights_the_classes():
    labels = np.array([1] * 10 + [0] * 90)
    scores = np.array([0.9] * 8 + [0.1] * 2 + [0.9] * 9 + [0.1] * 81)  # sensitivity 0.8, FPR 0.1
    raw = 2 * 8 / (2 * 8 + 9 + 2)
    assert metrics.f1_at_prevalence(labels, scores, 0.5, prevalence=0.1) == pytest.approx(raw)
    tp, fp, fn = 0.8 * 0.284, 0.1 * 0.716, 0.2 * 0.284
    assert metrics.f1_at_prevalence(labels, scores, 0.5) == pytest.approx(
        2 * tp / (2 * tp + fp + fn)
    )
    assert metrics.f1_at_prevalence(labels, scores, 0.5) > raw  # more positives, higher F1
    assert np.isnan(metrics.f1_at_prevalence([1, 1], [0.9, 0.1]))


def test_operating_thresholds_are_each_rules_optimum():
    labels = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    scores = np.linspace(0.05, 0.95, 10)
    chosen = statistics.operating_thresholds(labels, scores, target_sensitivity=1.0)
    assert chosen["sensitivity"] == pytest.approx(scores[4])  # keeps every positive
    for rule in ("max_f1", "max_balanced_accuracy"):
        best = max(
            statistics.point_metrics(labels, scores, t)[
                "f1" if rule == "max_f1" else "balanced_accuracy"
            ]
            for t in scores
        )
        got = statistics.point_metrics(labels, scores, chosen[rule])
        assert got["f1" if rule == "max_f1" else "balanced_accuracy"] == pytest.approx(best)
    with pytest.raises(ValueError, match="unknown threshold rule"):
        statistics.best_threshold(labels, scores, "max_accuracy")
    # F1 at the references' prevalence: its own optimum, a lower threshold than raw F1's on
    # a set with fewer positives than 28.4 %
    rare = np.r_[np.zeros(100, int), np.ones(10, int)]
    spread = np.r_[np.linspace(0.0, 0.8, 100), np.linspace(0.4, 1.0, 10)]
    at_reference = statistics.best_threshold(rare, spread, "max_f1_at_reference_prevalence")
    assert metrics.f1_at_prevalence(rare, spread, at_reference) == pytest.approx(
        max(metrics.f1_at_prevalence(rare, spread, t) for t in spread)
    )
    assert at_reference < statistics.best_threshold(rare, spread, "max_f1")


def test_report_uses_the_named_rule_and_records_all_three():
    rng = np.random.default_rng(0)
    labels = (rng.random(200) < 0.3).astype(int)
    scores = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    groups = np.repeat([f"p{i}" for i in range(10)], 20)
    split = (labels, scores, groups)
    report = statistics.build_report(split, split, resamples=10, operating_rule="max_f1")
    thresholds = report["thresholds"]
    assert set(thresholds["candidates"]) == {"sensitivity", "max_f1", "max_balanced_accuracy"}
    assert thresholds["operating"]["rule"] == "max_f1"
    assert thresholds["operating"]["value"] == thresholds["candidates"]["max_f1"]["value"]
    assert (
        report["slide_context"]["available"] is False and "x/y" in report["slide_context"]["note"]
    )
    with pytest.raises(ValueError, match="operating_rule"):
        statistics.build_report(split, split, resamples=10, operating_rule="youden")


def test_report_adds_slide_context_where_patches_carry_xy():
    truth, scores, xs, ys = _slide(seed=3)
    groups = np.array(["p"] * len(truth))
    xy = np.stack([xs, ys], axis=1).astype(float)
    report = statistics.build_report(
        (truth, scores, groups), (truth, scores, groups), resamples=10, test_xy=xy, choose_xy=xy
    )
    context = report["slide_context"]
    assert context["available"] and context["sigma_grid_steps"] > 0
    assert context["auc"]["value"] > metrics.roc_auc(truth, scores)


def test_the_config_rejects_an_unknown_rule():
    from breastdx_core import configs

    assert configs.load(env={}).evaluation.operating_rule in configs.OPERATING_RULES
    with pytest.raises(ValueError, match="operating_rule"):
        configs.load(env={}, operating_rule="youden")


# --- patient-stratified splits --------------------------------------------------------------
def _patients(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"{8800 + i}": [int(rng.integers(100, 900)), int(rng.integers(0, 300)) * (i % 4 != 0)]
        for i in range(n)
    }


def test_thirteen_patients_give_three_eval_patients_with_both_classes():
    patients = _patients(13)
    assignment, notes = splits.assign(patients, BUCKETS, min_eval=3)
    assert set(assignment) == set(patients) and notes == []
    for index in (1, 2):  # eval and test
        held = [p for p, s in assignment.items() if s == index]
        assert len(held) >= 3
        assert all(sum(patients[p][c] for p in held) > 0 for c in (0, 1))
    assert (
        assignment == splits.assign(dict(reversed(list(patients.items()))), BUCKETS, 3)[0]
    )  # deterministic


def test_large_sets_keep_the_bucket_shares_per_stratum():
    patients = _patients(400, seed=1)
    assignment, _ = splits.assign(patients, BUCKETS, min_eval=3)
    counts = np.bincount(list(assignment.values()), minlength=3)
    assert abs(counts[0] / 400 - 0.7) < 0.02 and abs(counts[1] / 400 - 0.15) < 0.02
    negative_only = [p for p, c in patients.items() if c[1] == 0]
    shares = np.bincount([assignment[p] for p in negative_only], minlength=3) / len(negative_only)
    assert abs(shares[1] - 0.15) < 0.05  # each stratum dealt in proportion


def test_too_few_patients_says_so_and_keeps_train():
    assignment, notes = splits.assign({"a": [5, 1], "b": [3, 0], "c": [2, 2]}, BUCKETS, min_eval=3)
    assert list(assignment.values()).count(0) >= 1
    assert any("eval split: 1 patient(s), fewer than the 3 asked" in n for n in notes)


def test_the_splitter_looks_up_the_stratified_assignment():
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    from breastdx_core import contract
    from components.image_ingest import executor, layouts

    output = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b) for n, b in BUCKETS],
            partition_feature_name=contract.PATIENT_KEY,
        )
    )
    config_json = proto_utils.proto_to_json(output)
    candidates = [
        layouts.Candidate(f"/r/{p}/{lab}/x.png", f"{p}/{lab}/x.png", lab, p)
        for p, counts in _patients(13).items()
        for lab in (0, 1)
        if counts[lab]
    ]
    assignment, _ = executor.stratified_assignment(
        candidates, {executor.MIN_EVAL_KEY: 3, "output_config": config_json}, 2
    )
    splitter = executor._Splitter(config_json, assignment)
    for candidate in candidates:
        assert splitter(b"unused", candidate) == assignment[candidate.patient_id]
    assert executor.stratified_assignment(candidates, {"output_config": config_json}, 2) == (
        None,
        [],
    )


# --- training budget, TTA, in-model resize ---------------------------------------------------
def test_cpu_time_budget_stops_training_and_says_why():
    from components.trainer.training import WallTimeBudget

    class Model:
        stop_training = False

    clock = WallTimeBudget(0.0, 8, cpu_minutes=0.001)  # 60 ms of this process's CPU time
    clock.model = Model()
    clock.on_train_begin()
    clock.on_train_batch_end(0)
    assert not clock.model.stop_training
    started = time.process_time()
    while time.process_time() - started < 0.1:
        sum(range(1000))
    clock.on_train_batch_end(1)
    assert clock.model.stop_training and clock.stopped_by == "CPU time" and clock.batches == 2


def test_dihedral_views_are_the_eight_orientations():
    import tensorflow as tf

    from components.trainer.export import dihedral_views

    image = tf.reshape(tf.range(2 * 3 * 3 * 1, dtype=tf.float32), [2, 3, 3, 1])
    views = dihedral_views(image)
    assert len(views) == 8 and np.array_equal(views[0].numpy(), image.numpy())
    distinct = {v.numpy()[0].tobytes() for v in views}
    assert len(distinct) == 8
    # the average over the group is the same whatever the input's orientation
    rotated = tf.image.rot90(image)
    mean = lambda x: np.mean([v.numpy() for v in dihedral_views(x)], axis=0).sum()  # noqa: E731
    assert mean(image) == pytest.approx(mean(rotated))


def test_the_model_resizes_to_the_backbone_input_size():
    from breastdx_core import configs
    from components.trainer import model as model_lib
    from components.trainer.sections import TrainerSettings

    settings = (
        TrainerSettings.of(configs.load(env={}))
        .with_task(model_size=(32, 32))
        .with_training(backbone="efficientnet_lite0", weights=None, backbone_input_size=48)
    )
    model = model_lib.build_model(settings)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.get_layer("backbone_resize").output_shape == (None, 48, 48, 3)
    assert model(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 2)


# --- near-duplicates ------------------------------------------------------------------------
def _png(array, fmt="PNG", size=None):
    import io

    from PIL import Image

    image = Image.fromarray(array)
    if size:
        image = image.resize(size)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=70) if fmt == "JPEG" else image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_near_duplicates_find_reencoded_copies_and_nothing_else():
    from components.image_ingest import near_duplicates

    rng = np.random.default_rng(0)
    base = [
        np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        for _ in range(4)
    ]
    files = [(f"img{i}.png", _png(a)) for i, a in enumerate(base)]
    files += [("img0-copy.jpg", _png(base[0], "JPEG", (60, 60))), ("broken.png", b"not an image")]
    found, unreadable = near_duplicates.find(files, max_bits=4)
    assert found == [["img0-copy.jpg", "img0.png"]] and unreadable == ["broken.png"]
    assert near_duplicates.distance(0b1011, 0b0010) == 2


def test_near_duplicate_groups_move_linked_patients_into_one_split():
    from components.image_ingest import near_duplicates

    assignment = {"a": 0, "b": 2, "c": 1, "d": 0}
    patient_of = {"a.png": "a", "b.png": "b", "c.png": "c", "d.png": "d"}
    merged, listed = near_duplicates.merge_patients(
        assignment, patient_of, [["a.png", "b.png"], ["b.png", "c.png"]]
    )
    assert merged["a"] == merged["b"] == merged["c"] == 0 and merged["d"] == 0
    assert listed[0]["splits_before"] == [0, 2] and listed[1]["split"] == 0


def test_run_estimate_only_for_time_bounded_budgets():
    from breastdx_core import configs

    assert (
        configs.run_estimate(configs.load(env={}, data_root="/data", max_train_minutes=0.0), 14078)
        is None
    )
    text = configs.run_estimate(
        configs.load(env={}, data_root="/data", max_train_minutes=10.0), 14078
    )
    assert text.startswith("about ") and "training at most 10 min" in text
    minutes = int(text.split()[1])
    assert 10 < minutes < 20


# --- the benchmark's own pieces ---------------------------------------------------------------
def _bench(name: str = "idc_budget"):
    import importlib.util
    import os

    path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", f"{name}.py"
    )
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_candidates_and_pooling():
    bench = _bench()
    assert bench.parse_candidate("lite2@224") == ("efficientnet_lite2", "imagenet", 224)
    assert bench.parse_candidate("vgg16@64") == ("vgg16", None, 64)
    with pytest.raises(SystemExit, match="expected"):
        bench.parse_candidate("resnet@64")
    # Recipe overrides: typed as the settings declare them; the harness's own fields refused.
    spec = "lite0@128:unfreeze_last=1000:stain_jitter=0.05:augment=false"
    assert bench.parse_candidate(spec) == ("efficientnet_lite0", "imagenet", 128)
    assert bench.recipe(spec) == {"unfreeze_last": 1000, "stain_jitter": 0.05, "augment": False}
    for bad in ("lite0@128:epochs=3", "lite0@128:no_such_field=1", "lite0@128:dropout="):
        with pytest.raises(SystemExit, match="not a training field"):
            bench.parse_candidate(bad)
    # Two folds whose score scales differ: each called at its own eval-chosen threshold.
    rows = []
    for k, (low, high) in enumerate([(0.05, 0.3), (0.6, 0.9)]):
        labels = [0, 0, 1, 1] * 3
        scores = [low, low, high, high] * 3
        groups = [f"f{k}p{i // 4}" for i in range(12)]
        chosen = {rule: {"threshold": high} for rule in bench.RULES}
        rows.append({"labels": labels, "scores": scores, "groups": groups, "plain": chosen})
    pooled = bench.pooled(rows, resamples=20, seed=0)
    assert pooled["n_patients"] == 6 and "tta" not in pooled
    assert pooled["plain"]["max_balanced_accuracy"]["balanced_accuracy"]["value"] == 1.0
    assert pooled["plain"]["max_f1"]["f1_at_reference_prevalence"]["value"] == 1.0


def test_real_idc_preset_applies_as_a_bundle_unless_a_backbone_is_named():
    from breastdx_core import configs

    preset = configs.REAL_DATA_TASK_DEFAULTS["idc"]
    real = configs.load(env={}, data_root="/data")
    assert (real.training.backbone, real.training.weights, real.training.backbone_input_size) == (
        preset["backbone"],
        preset["weights"],
        preset["backbone_input_size"],
    )
    own = configs.load(env={}, data_root="/data", backbone="vgg16")
    assert (own.training.backbone, own.training.weights, own.training.backbone_input_size) == (
        "vgg16",
        None,
        0,
    )
    assert (
        own.training.max_train_minutes == preset["max_train_minutes"]
    )  # the time budget applies either way
    synthetic = configs.load(env={})
    assert (
        synthetic.training.backbone_input_size == 0 and synthetic.training.max_train_minutes == 0.0
    )


def test_ceiling_oracle_thresholds_maximise_the_pooled_figures():
    """The oracle is the best pooled figure over every combination of per-fold thresholds
    (brute force on two small folds whose score scales differ), and the eval thresholds a
    file records are pooled as recorded."""
    import itertools

    ceiling = _bench("idc_ceiling")
    rng = np.random.default_rng(4)
    folds = []
    for k, (n, prevalence, shift) in enumerate(((40, 0.2, 0.0), (30, 0.5, 2.0))):
        labels = (rng.random(n) < prevalence).astype(int)
        scores = 1 / (1 + np.exp(-(labels * 1.2 + rng.normal(0, 1, n) + shift)))
        folds.append(
            {
                "labels": labels,
                "scores": scores,
                "groups": np.array([f"p{k}{i % 3}" for i in range(n)]),
            }
        )
    y = np.concatenate([f["labels"] for f in folds])
    p = metrics.REFERENCE_PREVALENCE

    def pooled(thresholds):
        called = np.concatenate([f["scores"] >= t for f, t in zip(folds, thresholds)])
        sens, fpr = called[y == 1].mean(), called[y == 0].mean()
        return (sens + 1 - fpr) / 2, 2 * p * sens / (p * sens + (1 - p) * fpr + p)

    grids = [np.unique(f["scores"]) for f in folds]
    best_ba = max(pooled(t)[0] for t in itertools.product(*grids))
    best_f1 = max(pooled(t)[1] for t in itertools.product(*grids))
    assert pooled(ceiling.oracle_thresholds(folds, "max_balanced_accuracy"))[0] == pytest.approx(
        best_ba
    )
    assert pooled(ceiling.oracle_thresholds(folds, "max_f1"))[1] == pytest.approx(best_f1, abs=2e-3)
    # a per-fold Youden choice is not the pooled optimum here (the folds' prevalences differ)
    youden = [
        statistics.best_threshold(f["labels"], f["scores"], "max_balanced_accuracy") for f in folds
    ]
    assert pooled(youden)[0] < best_ba
    result = ceiling.ceiling(
        [{**f, "eval": {"max_balanced_accuracy": 0.5, "max_f1": 0.5}} for f in folds], 50, 0
    )
    assert result["eval"]["balanced_accuracy"]["value"] == pytest.approx(pooled([0.5, 0.5])[0])
    assert result["oracle"]["balanced_accuracy"]["value"] == pytest.approx(best_ba)
