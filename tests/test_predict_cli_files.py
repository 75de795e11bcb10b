"""``breastdx predict`` checks files as the web app's uploads are checked: a bad file gets its own
line and reason, the rest are classified, exit status 1; large images become PNG maps and a
patient folder the mosaic (tiny model over a live server, and in-process)."""

import argparse
import io
import json

import numpy as np
from PIL import Image

from breastdx_core import contract
from webapp import tiling

pytest_plugins = ["conftest_serving"]

from serving_helpers import BLUE, CLASS_NAMES, MODEL_NAME, RED, png_bytes  # noqa: E402


def parse(argv):
    from breastdx_cli.predict import add_predict_parser

    parser = argparse.ArgumentParser()
    add_predict_parser(parser.add_subparsers(dest="verb"))
    return parser.parse_args(["predict"] + argv)


def bad_and_good_files(tmp_path):
    files = {
        "red.png": png_bytes(RED),
        "blue.png": png_bytes(BLUE),
        "empty.png": b"",
        "noise.txt": b"hello",
    }
    tiff = io.BytesIO()
    Image.new("RGB", (50, 50), RED).save(tiff, format="TIFF")
    files["scan.tif"] = tiff.getvalue()
    paths = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        paths.append(str(tmp_path / name))
    return paths + [str(tmp_path / "missing.png")]


def test_bad_files_get_their_own_line_and_the_rest_are_classified(tmp_path, live_model_server):
    from breastdx_cli.predict import run_predict

    paths = bad_and_good_files(tmp_path)
    out = io.StringIO()
    status = run_predict(
        parse(paths + ["--server", live_model_server.url, "--model", MODEL_NAME]), out
    )
    assert status == 1
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines()[: len(paths)])
    red, blue, empty, noise, tif, missing = paths
    assert lines[red].startswith(f"{CLASS_NAMES[1]} p=") and lines[blue].startswith(
        f"{CLASS_NAMES[0]} p="
    )
    assert lines[empty] == "refused: the file is empty"
    assert lines[noise].startswith("refused: not an image; expected PNG, JPEG, GIF or BMP")
    assert lines[tif].startswith(
        "refused: not an image"
    )  # was a TensorFlow DecodeImage error for the batch
    assert lines[missing].startswith("refused: cannot read the file")
    assert out.getvalue().rstrip().endswith(contract.RESEARCH_ONLY)


def test_all_good_files_exit_zero_in_process(tmp_path, tiny_model_dir):
    from breastdx_cli.predict import run_predict

    paths = bad_and_good_files(tmp_path)[:2]
    out = io.StringIO()
    assert run_predict(parse(paths + ["--saved-model", tiny_model_dir, "--json"]), out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()[:2]]
    assert [r["class_name"] for r in rows] == [CLASS_NAMES[1], CLASS_NAMES[0]]


def test_a_large_image_becomes_a_png_map_and_a_folder_the_mosaic(tmp_path, live_model_server):
    from breastdx_cli.predict import run_predict

    pixels = np.full((200, 300, 3), 240, np.uint8)
    pixels[:100, 100:] = RED
    pixels[100:, 100:] = BLUE
    Image.fromarray(pixels).save(tmp_path / "section.png")
    patient = tmp_path / "12345"
    for x, y, label, color in [(0, 0, 1, RED), (50, 0, 0, BLUE), (100, 50, 1, RED)]:
        (patient / str(label)).mkdir(parents=True, exist_ok=True)
        (patient / str(label) / f"12345_idx5_x{x}_y{y}_class{label}.png").write_bytes(
            png_bytes(color)
        )
    maps = tmp_path / "maps"
    out = io.StringIO()
    argv = [
        str(tmp_path / "section.png"),
        "--mosaic",
        str(patient),
        "--map-dir",
        str(maps),
        "--server",
        live_model_server.url,
        "--model",
        MODEL_NAME,
    ]
    assert run_predict(parse(argv), out) == 0, out.getvalue()
    text = out.getvalue()
    assert (
        "map 4x6 tiles: 16 assessed, 0 uncertain, 0 not assessed, 8 positive, 8 background" in text
    )
    assert (
        "mosaic of patient 12345: 3 patches, 3 assessed, 0 uncertain, 0 not assessed, 2 positive"
        in text
    )
    with Image.open(maps / "section.map.png") as picture:
        assert picture.size == (tiling.LEGEND_MIN_WIDTH, 200 + tiling.LEGEND_HEIGHT)
        assert picture.getpixel((50, 150)) == (240, 240, 240)  # glass: never sent, left as it was
        hot = np.array(tiling.colour_of(1.0))
        blend = (np.array(RED) + hot) / 2  # a red tile, p ~ 1, half-tinted hot
        assert np.abs(np.array(picture.getpixel((250, 75))) - blend).max() <= 3
    with Image.open(maps / "12345.mosaic.png") as picture:
        assert picture.size == (tiling.LEGEND_MIN_WIDTH, 100 + tiling.LEGEND_HEIGHT)
