"""``breastdx predict`` (breastdx_cli.predict) in-process and against a live model server."""

import argparse
import io

from breastdx_core import contract

pytest_plugins = ["conftest_serving"]

from serving_helpers import BLUE, CLASS_NAMES, MODEL_NAME, RED, png_bytes  # noqa: E402


def parse(argv):
    from breastdx_cli.predict import add_predict_parser

    parser = argparse.ArgumentParser()
    add_predict_parser(parser.add_subparsers(dest="verb"))
    return parser.parse_args(["predict"] + argv)


def images(tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(png_bytes(RED))
    blue.write_bytes(png_bytes(BLUE))
    return [str(red), str(blue)]


def test_predict_with_a_saved_model(tmp_path, tiny_model_dir):
    from breastdx_cli.predict import run_predict

    out = io.StringIO()
    files = images(tmp_path)
    assert run_predict(parse(files + ["--saved-model", tiny_model_dir]), out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{files[0]}: {CLASS_NAMES[1]} p=")
    assert lines[1].startswith(f"{files[1]}: {CLASS_NAMES[0]} p=")
    assert lines[-1] == contract.RESEARCH_ONLY


def test_predict_against_a_server(tmp_path, live_model_server):
    from breastdx_cli.predict import run_predict

    out = io.StringIO()
    files = images(tmp_path)
    assert (
        run_predict(parse(files + ["--server", live_model_server.url, "--model", MODEL_NAME]), out)
        == 0
    )
    assert f"{CLASS_NAMES[1]} p=" in out.getvalue() and "version 1" in out.getvalue()
    assert out.getvalue().rstrip().endswith(contract.RESEARCH_ONLY)


def test_predict_reports_a_missing_file_and_an_unknown_model(tmp_path, live_model_server):
    from breastdx_cli.predict import run_predict

    assert (
        run_predict(
            parse([str(tmp_path / "nope.png"), "--saved-model", str(tmp_path)]), io.StringIO()
        )
        == 2
    )
    args = parse(images(tmp_path) + ["--server", live_model_server.url, "--model", "nope"])
    assert run_predict(args, io.StringIO()) == 1
