"""Shared fixtures: small synthetic image trees made in the test, a temporary workdir; and the
scopes `make test`'s two pytest-xdist workers share the suite by."""

import os

os.environ.setdefault(
    "TF_USE_LEGACY_KERAS", "1"
)  # as every entry point does (docs/decisions/0001-keras2.md)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from breastdx_core import configs  # noqa: E402
from pipeline import synthetic  # noqa: E402

# `make test` runs two pytest-xdist workers. Each session fixture that runs a whole pipeline
# is built once per worker that asks for it, so every file using one runs in one worker (a
# scheduling scope of its own); every other file is a scope (its module fixtures built once).
# The table is checked against the files' fixtures at collection, so it cannot go stale.
SHARED_RUNS = {
    "idc_run": "idc-run",
    "busi_run": "preset-runs",
    "segmentation_run": "preset-runs",
    "cbis_run": "preset-runs",
}
SCOPE_OF_FILE = {
    "tests/test_cv.py": "idc-run",
    "tests/test_decision_e2e.py": "idc-run",
    "tests/test_lab_compare.py": "idc-run",
    "tests/test_pipeline_e2e.py": "idc-run",
    "tests/test_busi_e2e.py": "preset-runs",
    "tests/test_cbis_e2e.py": "preset-runs",
    "tests/test_segmentation_e2e.py": "preset-runs",
    "tests/test_webapp_model_kinds.py": "preset-runs",
}


def _scope(nodeid: str) -> str:
    file = nodeid.split("::")[0]
    return SCOPE_OF_FILE.get(file, file)


def pytest_xdist_make_scheduler(config, log):
    """xdist's by-scope scheduler with `SCOPE_OF_FILE`'s scopes (its ``xdist_group`` marks
    do not reach node ids under pytest 9, so ``--dist loadgroup`` cannot be used)."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return SharedRunScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Refuses a file that uses a shared run without its scope in `SCOPE_OF_FILE`, and puts
    the shared runs' scopes first: the two longest chains start at once on two workers."""
    for item in items:
        for fixture in set(item.fixturenames) & set(SHARED_RUNS):
            if _scope(item.nodeid) != SHARED_RUNS[fixture]:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {fixture}: add its file to SCOPE_OF_FILE in "
                    f"tests/conftest.py as {SHARED_RUNS[fixture]!r}"
                )
    runs = list(dict.fromkeys(SHARED_RUNS.values()))
    items.sort(key=lambda item: runs.index(s) if (s := _scope(item.nodeid)) in runs else len(runs))


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
