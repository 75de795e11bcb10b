"""One source for each setting the server, the web app, `breastdx predict` and the CLI
share (settings drift)."""

import os

from breastdx_core import configs
from serving import settings


def test_server_address_and_model_name_have_one_source():
    import webapp
    from breastdx_cli import predict as predict_cli

    assert settings.DEFAULT_MODEL_NAME == configs.PipelineConfig().model_name == "breastdx-idc"
    assert webapp.DEFAULTS["MODEL_NAME"] == predict_cli.DEFAULT_MODEL == settings.DEFAULT_MODEL_NAME
    assert (
        webapp.DEFAULTS["SERVER_URL"] == predict_cli.DEFAULT_SERVER == settings.DEFAULT_SERVER_URL
    )
    assert settings.DEFAULT_SERVER_URL.endswith(f":{settings.DEFAULT_PORT}")


def test_demo_variants_are_flags_not_environment_changes(monkeypatch):
    """`breastdx demo --variant segment --blackbox` (what `make demo PRESET=busi-seg`
    runs) steers through configs.load's overrides, leaving os.environ as it was."""
    from breastdx_cli import main as cli

    for name in [k for k in os.environ if k.startswith(configs.ENV_PREFIX)]:
        monkeypatch.delenv(name)
    before = {k: v for k, v in os.environ.items() if k.startswith(configs.ENV_PREFIX)}
    args = cli.build_parser().parse_args(
        [
            "demo",
            "--task",
            "busi",
            "--variant",
            "segment",
            "--blackbox",
            "--workdir",
            "/tmp/breastdx-settings-test",
        ]
    )
    config = cli._config(args)
    assert (config.variant, config.segmentation.blackbox, config.pipeline_name) == (
        "segment",
        True,
        "breastdx-busi-seg",
    )
    args = cli.build_parser().parse_args(
        [
            "demo",
            "--task",
            "cbis",
            "--variant",
            "mammo",
            "--full-size",
            "--workdir",
            "/tmp/breastdx-settings-test",
        ]
    )
    config = cli._config(args)
    assert config.pipeline_name == "breastdx-cbis-mammo"
    assert (config.mammography.image_size, config.mammography.patch_size) == ((1152, 896), 224)
    assert config.mammography.patch_schedule.startswith("head:0.001:3,top:0.0001:10")
    assert {k: v for k, v in os.environ.items() if k.startswith(configs.ENV_PREFIX)} == before == {}
