"""Session fixtures: the imaging presets' real pipeline runs, shared by every test that needs
their pushed models (a pytest plugin; load it with ``pytest_plugins = ["conftest_presets"]``).

``tests/test_busi_e2e.py``, ``tests/test_segmentation_e2e.py``, ``tests/test_cbis_e2e.py``
check the runs themselves; ``tests/test_webapp_model_kinds.py`` serves the same pushed
models to the web app. One run per preset per session: the suite pays for each once.
"""

import pytest

from breastdx_core import configs
from pipeline import synthetic

# The BUSI preset's own model and fine-tuning (ImageNet EfficientNet-Lite0, the head phase then
# the top layers) on a smaller budget than the synthetic demo's 120 steps in 4 epochs: one
# epoch per phase still runs both phases' compile-and-fit, and the pretrained features
# separate the synthetic classes well before 48 steps.
BUSI_TEST_BUDGET = {"train_steps": 48, "eval_steps": 2, "epochs": 2}


@pytest.fixture(scope="session")
def busi_run(tmp_path_factory):
    """The BUSI 3-class preset (its backbone, weights and fine-tuning; BUSI_TEST_BUDGET):
    (config, data)."""
    import local_runner

    workdir = str(tmp_path_factory.mktemp("busi_e2e"))
    config = configs.load(env={}, workdir=workdir, task="busi", seed=5, **BUSI_TEST_BUDGET)
    data = synthetic.write_busi(config.data_root, seed=5)
    local_runner.run(config)
    return config, data


@pytest.fixture(scope="session")
def segmentation_run(tmp_path_factory):
    """The U-Net variant on BUSI with masks (black-box area classifier): (config, data).
    Two epochs keep both phases of the pretrained encoder's fine-tuning (decoder on the
    frozen encoder, then the whole)."""
    import local_runner

    config = configs.load(
        env={},
        workdir=str(tmp_path_factory.mktemp("seg_e2e")),
        task="busi",
        variant="segment",
        seg_blackbox=True,
        train_steps=24,
        eval_steps=2,
        epochs=2,
        seed=5,
    )
    data = synthetic.write_busi(config.data_root, seed=5)
    local_runner.run(config)
    return config, data


# The mammography variant at small sizes: synthetic mammograms fitted to 144x112 and
# 32-pixel patches (EfficientNet-Lite0's smallest; the preset's backbone) keep the run on
# 2 cores to a few minutes (the preset's own sizes are breastdx_core/configs.py's mammo_*;
# `--full-size` the study's).
CBIS_TEST_SETTINGS = {
    "BREASTDX_SYNTHETIC_CBIS_PATIENTS": "12",
    "BREASTDX_SEED": "5",
    "BREASTDX_MAMMO_IMAGE_SIZE": "144,112",
    "BREASTDX_MAMMO_PATCH_SIZE": "32",
    "BREASTDX_MAMMO_HEATMAP_STRIDE": "8",
    "BREASTDX_MAMMO_PATCH_SCHEDULE": "head:0.001:1,all:0.001:3",
    "BREASTDX_MAMMO_WHOLE_SCHEDULE": "head:0.001:1,all:0.0001:1",
}


@pytest.fixture(scope="session")
def cbis_run(tmp_path_factory):
    """The mammography variant as `make demo PRESET=cbis` runs it (`breastdx demo --task
    cbis --variant mammo`, a subprocess with its real console) on a tiny synthetic
    release: (config, console output: stderr then stdout)."""
    import os
    import subprocess
    import sys

    workdir = str(tmp_path_factory.mktemp("cbis_e2e"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(configs.ENV_PREFIX)}
    env.update(CBIS_TEST_SETTINGS)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "breastdx_cli.main",
            "demo",
            "--task",
            "cbis",
            "--variant",
            "mammo",
            "--workdir",
            workdir,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:] + done.stdout[-2000:]
    config = configs.load(env=CBIS_TEST_SETTINGS, workdir=workdir, task="cbis", variant="mammo")
    return config, done.stderr + done.stdout
