"""bench/serve.py reads locust's CSV (the figures in docs/results/serving.md come from it) and
bench/throughput.py's speed-up ratio, IDC tree reading and paired AUC difference."""

import importlib.util
import os

import pytest

_BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", os.path.join(_BENCH, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# locust 2.46's <prefix>_stats.csv, as a 5-user run against the model server wrote it
HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
STATS = (
    HEADER
    + """
POST,:predict,625,3,14,15.46,6.16,47.90,396.0,312.80,0.0,14,16,18,19,22,25,29,33,48,48,48
,Aggregated,625,3,14,15.46,6.16,47.90,396.0,312.80,0.0,14,16,18,19,22,25,29,33,48,48,48
"""
)


def test_read_locust_csv_takes_the_aggregated_row(tmp_path):
    serve = _load("serve")
    (tmp_path / "run_stats.csv").write_text(STATS)
    row = serve.read_locust_csv(str(tmp_path / "run"))
    assert row == {
        "requests": 625.0,
        "failures": 3.0,
        "p50_ms": 14.0,
        "p99_ms": 33.0,
        "rps": 312.80,
    }


def test_read_locust_csv_refuses_a_file_without_the_aggregate(tmp_path):
    serve = _load("serve")
    (tmp_path / "run_stats.csv").write_text(STATS.rsplit("\n", 2)[0] + "\n")
    with pytest.raises(SystemExit):
        serve.read_locust_csv(str(tmp_path / "run"))


def test_cpu_row_divides_by_answered_requests():
    serve = _load("serve")
    row = serve.cpu_table_row(
        "t",
        "s",
        50,
        {
            "requests": 110,
            "failures": 10,
            "cpu_model": 2.0,
            "cpu_web": 1.0,
            "cpu_locust": 0.5,
            "seconds": 2.0,
        },
    )
    assert row == "| t | s | 50 | 20.0 | 10.0 | 5.0 | 1.75 |"


def test_throughput_ratio():
    throughput = _load("throughput")
    assert throughput.ratio({64: 120.0, 224: 10.0}, 64, 224) == pytest.approx(12.0)


def test_idc_files_reads_patient_and_label_from_the_tree(tmp_path):
    throughput = _load("throughput")
    for patient, label, name in [
        ("8863", "0", "a.png"),
        ("8863", "1", "b.png"),
        ("9022", "0", "c.png"),
    ]:
        (tmp_path / patient / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / patient / label / name).write_bytes(b"x")
    (tmp_path / "9022" / "0" / "notes.txt").write_text("not an image")
    paths, labels, groups = throughput.idc_files(str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["a.png", "b.png", "c.png"]
    assert labels.tolist() == [0, 1, 0]
    assert groups.tolist() == ["8863", "8863", "9022"]


def test_idc_files_refuses_a_tree_without_patches(tmp_path):
    throughput = _load("throughput")
    with pytest.raises(SystemExit, match="no <patient>"):
        throughput.idc_files(str(tmp_path))


def test_paired_auc_difference_is_signed_and_zero_for_the_same_scores():
    import numpy as np

    throughput = _load("throughput")
    labels = np.array([0, 1] * 20)
    groups = np.repeat([f"p{i}" for i in range(10)], 4)
    perfect = labels.astype(float)
    inverted = 1.0 - perfect
    same = throughput.paired_auc_difference(labels, perfect, perfect, groups, resamples=200, seed=0)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    better = throughput.paired_auc_difference(
        labels, perfect, inverted, groups, resamples=200, seed=0
    )
    assert better["difference"] == pytest.approx(1.0)
    assert better["low"] == pytest.approx(1.0)
    worse = throughput.paired_auc_difference(
        labels, inverted, perfect, groups, resamples=200, seed=0
    )
    assert worse["high"] == pytest.approx(-1.0)
