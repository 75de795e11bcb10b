"""Shared fixtures: small synthetic image trees made in the test, a temporary workdir."""

import os

os.environ.setdefault(
    "TF_USE_LEGACY_KERAS", "1"
)  # as every entry point does (docs/decisions/0001-keras2.md)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from breastdx_core import configs  # noqa: E402
from pipeline import synthetic  # noqa: E402


@pytest.fixture(scope="session")
def idc_tree(tmp_path_factory):
    """A small IDC tree with every planted quirk (6 patients x ~10 patches)."""
    root = str(tmp_path_factory.mktemp("idc"))
    summary = synthetic.write_idc(root, patients=6, patches_per_patient=10, seed=3)
    return summary


@pytest.fixture(scope="session")
def busi_tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("busi"))
    return synthetic.write_busi(root, per_class=3, seed=3)


@pytest.fixture(scope="session")
def manifest_tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("manifest"))
    return synthetic.write_manifest(root, patients=2, per_patient=4, seed=3)


@pytest.fixture(scope="session")
def idc_run(tmp_path_factory):
    """The end-to-end pipeline on a small synthetic IDC set, run once per session and shared
    by the e2e tests (test_pipeline_e2e.py, test_decision_e2e.py): (config, data summary)."""
    import local_runner

    workdir = str(tmp_path_factory.mktemp("e2e"))
    config = configs.load(env={}, workdir=workdir, train_steps=16, eval_steps=4, seed=5)
    data = synthetic.write_idc(config.data_root, patients=30, patches_per_patient=18, seed=5)
    local_runner.run(config)
    return config, data


@pytest.fixture
def workdir(tmp_path):
    return str(tmp_path / "workdir")


@pytest.fixture
def config(workdir):
    """A configuration whose paths (pipeline root, SQLite metadata, serving root) are temporary."""
    return configs.load(env={}, workdir=workdir)
