"""webapp/slides.py and pipeline/synthetic_slide.py: slides built from synthetic IDC patches
(pipeline/synthetic.py) at their x/y, written by tifffile and read back with OpenSlide, the
reader the app uses: resolution, level choice, tissue mask, tiling, the map, GeoJSON, refusals.
A fake predictor stands in for the model server (the live server runs in test_slides_web.py)."""

import io
import json
import types

import numpy as np
import pytest
from PIL import Image

from breastdx_core import model_card
from pipeline import synthetic_slide
from webapp import slides

PATCH = 50
TARGET = 4.0


@pytest.fixture(scope="module")
def slide_files(tmp_path_factory):
    """One synthetic patient as an Aperio SVS at 1 um/px (level 1 is the model's scale) and as
    a generic TIFF at 2 um/px (no level at the model's scale: read and averaged down)."""
    root = tmp_path_factory.mktemp("slides")
    svs = synthetic_slide.synthetic_patient_slide(str(root / "patient.svs"), mpp=1.0)
    tif = synthetic_slide.synthetic_patient_slide(str(root / "patient.tif"), mpp=2.0)
    return svs, tif


class DarkPredictor:
    """The model's stand-in: P(positive) from a tile's darkness (the synthetic tumour's dense
    dark nuclei: mean ~155 against ~207 for benign tissue); records what it was sent."""

    def __init__(self):
        self.sizes, self.batches = set(), []

    def __call__(self, batch):
        self.batches.append(len(batch))
        answers = []
        for data in batch:
            image = Image.open(io.BytesIO(data))
            self.sizes.add(image.size)
            rgb = np.asarray(image.convert("RGB"), np.float32)
            p = float(np.clip((210 - rgb.mean()) / 60, 0, 1))
            answers.append(
                types.SimpleNamespace(
                    positive_probability=p,
                    probabilities=[1 - p, p],
                    class_name="x",
                    model_version="7",
                    ood_score=None,
                    decision=None,
                )
            )
        return answers


def test_reads_resolution_from_aperio_and_tiff_tags(slide_files):
    svs, tif = slide_files
    slide, info = slides.open_slide(svs["path"])
    assert (info.vendor, info.mpp, info.mpp_source) == ("aperio", 1.0, "slide metadata")
    assert (info.width, info.height) == (svs["width"], svs["height"]) and info.objective == 10.0
    slide.close()
    slide, info = slides.open_slide(tif["path"])
    assert info.vendor == "generic-tiff" and info.mpp == pytest.approx(2.0)
    slide.close()
    assert slides.read_mpp({"tiff.ResolutionUnit": "inch", "tiff.XResolution": "101600"}) == (
        0.25,
        "TIFF resolution tags",
    )
    assert (
        slides.read_mpp({"tiff.ResolutionUnit": "centimeter", "tiff.XResolution": "40000"})[0]
        == 0.25
    )
    assert slides.read_mpp({"tiff.ResolutionUnit": "none", "tiff.XResolution": "1"}) is None


def test_an_ome_tiff_is_read_at_its_ome_scale_and_mapped_like_the_tiff(slide_files, tmp_path):
    """A tiled OME-TIFF (pyramid in SubIFDs, scale only in its OME-XML): OpenSlide reads its
    full-resolution plane as a generic TIFF; the OME-XML gives the scale, and the map is the
    generic TIFF's map of the same pixels."""
    tif = slide_files[1]  # 2 um/px: both read level 0 and average it down to the model's scale
    slide, info = slides.open_slide(tif["path"])
    rgb = np.asarray(slide.read_region((0, 0), 0, (info.width, info.height)).convert("RGB"))
    ome = synthetic_slide.write_ome_tiff(str(tmp_path / "patient.ome.tif"), rgb, mpp=2.0)
    ome_slide, ome_info = slides.open_slide(ome)
    assert (ome_info.vendor, ome_info.mpp, ome_info.mpp_source) == ("generic-tiff", 2.0, "OME-XML")
    assert ome_info.levels == ((info.width, info.height, 1.0),)  # SubIFDs are not levels
    maps = [
        slides.map_slide(opened, about, DarkPredictor(), patch=PATCH, target_mpp=TARGET)
        for opened, about in ((slide, info), (ome_slide, ome_info))
    ]
    assert maps[1].counts() == maps[0].counts() and maps[1].counts()["positive"] > 0
    assert (maps[1].positive == maps[0].positive).all()
    description = '<?xml?><OME><Image><Pixels ID="P:0" PhysicalSizeX="{}" {}/></Image></OME>'
    for size, unit, mpp in (("0.25", "", 0.25), ("250", 'PhysicalSizeXUnit="nm"', 0.25)):
        found = slides.read_mpp({"tiff.ImageDescription": description.format(size, unit)})
        assert found == (pytest.approx(mpp), "OME-XML")
    assert slides.read_mpp({"tiff.ImageDescription": description.format("0", "")}) is None


def test_level_choice_reads_the_models_scale_and_never_upsamples(slide_files):
    svs, tif = slide_files
    _, info = slides.open_slide(svs["path"])
    choice = slides.choose_level(info, TARGET, PATCH)
    assert (choice.level, choice.resample, choice.tile_level, choice.tile_l0) == (
        1,
        False,
        50.0,
        200.0,
    )
    _, info = slides.open_slide(tif["path"])
    choice = slides.choose_level(
        info, TARGET, PATCH
    )  # level 0 is 2 um/px: read 100 px, average to 50
    assert (choice.level, choice.resample, choice.tile_level, choice.tile_l0) == (
        0,
        True,
        100.0,
        100.0,
    )
    # A model trained finer than the scan: refused rather than invented.
    with pytest.raises(slides.SlideError, match="coarser than the model's 0.25"):
        slides.choose_level(info, 0.25, PATCH)


def test_tissue_mask_finds_exactly_the_placed_patches(slide_files):
    for written in slide_files:
        slide, info = slides.open_slide(written["path"])
        choice = slides.choose_level(info, TARGET, PATCH)
        tissue = slides.tissue_mask(slide, info, choice)
        margin = written["origin"][0] // PATCH
        labels = written["labels"]
        placed = np.zeros(tissue.shape, bool)
        placed[margin : margin + labels.shape[0], margin : margin + labels.shape[1]] = labels >= 0
        # Edge patches of the synthetic set are cut short: those cells are partly glass.
        assert ((tissue >= 0.2) == placed).mean() > 0.97, written["path"]
        assert not (tissue[~placed] >= 0.2).any()


def test_map_streams_model_sized_tiles_and_finds_the_tumour(slide_files):
    for written in slide_files:
        slide, info = slides.open_slide(written["path"])
        predict = DarkPredictor()
        result = slides.map_slide(
            slide, info, predict, patch=PATCH, target_mpp=TARGET, batch=16, workers=2
        )
        assert predict.sizes == {(PATCH, PATCH)}  # every tile at the model's native patch
        assert max(predict.batches) <= 16 and sum(predict.batches) == result.counts()["assessed"]
        counts = result.counts()
        assert (
            counts["assessed"] + counts["background"]
            == counts["tiles"]
            == result.rows * result.cols
        )
        # The synthetic tumour tiles (class 1) are the ones the stand-in calls positive.
        margin = written["origin"][0] // PATCH
        labels = written["labels"]
        called = result.positive[
            margin : margin + labels.shape[0], margin : margin + labels.shape[1]
        ]
        assert (called[labels == 1]).mean() > 0.8 and (called[labels == 0]).mean() < 0.2
        top = result.top_regions()
        assert len(top) == 5 and top[0]["positive_probability"] >= top[-1]["positive_probability"]
        # Regions are level-0 boxes: the tile's box at the slide's own resolution.
        region = top[0]
        assert region["width"] == round(result.choice.tile_l0)
        assert labels[region["row"] - margin, region["col"] - margin] == 1
        body = json.loads(json.dumps(result.as_dict()))
        assert body["level"]["target_mpp"] == TARGET and len(body["grid"]) == result.rows
        assert result.model_version == "7"


def test_geojson_is_a_qupath_feature_collection_in_level0_pixels(slide_files):
    written = slide_files[0]
    slide, info = slides.open_slide(written["path"])
    result = slides.map_slide(slide, info, DarkPredictor(), patch=PATCH, target_mpp=TARGET)
    collection = json.loads(json.dumps(result.geojson()))
    assert collection["type"] == "FeatureCollection"
    detections = [f for f in collection["features"] if f["properties"]["objectType"] == "detection"]
    annotations = [
        f for f in collection["features"] if f["properties"]["objectType"] == "annotation"
    ]
    assert len(detections) == result.counts()["positive"] and len(annotations) == 5
    for feature in detections:
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        assert 0 <= min(xs) and max(xs) <= info.width and 0 <= min(ys) and max(ys) <= info.height
        assert max(xs) - min(xs) == 200  # one 50 px tile at 4 um/px is 200 px at 1 um/px
        assert feature["properties"]["classification"]["name"] == "positive"
        assert 0 <= feature["properties"]["measurements"]["P(positive)"] <= 1


def test_overlay_and_marks_cover_the_grid(slide_files):
    written = slide_files[0]
    slide, info = slides.open_slide(written["path"])
    result = slides.map_slide(slide, info, DarkPredictor(), patch=PATCH, target_mpp=TARGET)
    result.status[0, 0] = slides.UNCERTAIN  # one "refer" tile to outline
    result.probability[0, 0] = 0.5
    overlay = Image.open(io.BytesIO(result.overlay_png()))
    assert overlay.mode == "RGBA" and overlay.width * result.rows == overlay.height * result.cols
    alpha = np.asarray(overlay)[..., 3]
    per = overlay.width // result.cols
    opaque = alpha[::per, ::per] > 0
    answered = (result.status == slides.ASSESSED) | (result.status == slides.UNCERTAIN)
    assert (opaque == answered).all()
    result.status[0, 1] = slides.FLAGGED  # one "not assessed" tile to grey out
    marks = np.asarray(Image.open(io.BytesIO(result.marks_png())))
    per = marks.shape[1] // result.cols
    assert marks[0, per // 2, 3] == 255 and marks[per // 2, per // 2, 3] == 0  # an outline, hollow
    edge = marks[0, :per, :3]  # dashed as the legend's swatch: black dashes over white
    assert (edge == 0).all(axis=1).any() and (edge == 255).all(axis=1).any()
    assert marks[per // 2, per + per // 2, 3] > 0  # the not-assessed tile: filled grey
    picture = Image.open(
        io.BytesIO(result.render_png(slide, "Research use only, not a diagnosis.", side=512))
    )
    assert picture.width >= 360 and picture.height > 100


def test_refusals_are_one_line_with_a_status(tmp_path, slide_files):
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n")
    with pytest.raises(slides.SlideError, match="not a whole-slide image") as err:
        slides.open_slide(str(text))
    assert (
        err.value.http_status == 400 and err.value.exit_code == 2 and "\n" not in err.value.message
    )
    with pytest.raises(slides.SlideError, match="no such slide file") as err:
        slides.open_slide(str(tmp_path / "missing.svs"))
    assert err.value.http_status == 404
    # A tiled TIFF without resolution tags: refused, asking for --mpp; accepted with it.
    bare = synthetic_slide.write_plain_tiff(
        str(tmp_path / "bare.tif"), np.full((512, 512, 3), 200, np.uint8)
    )
    with pytest.raises(slides.SlideError, match="--mpp"):
        slides.open_slide(bare)
    _, info = slides.open_slide(bare, mpp=4.0)
    assert (info.mpp, info.mpp_source) == (4.0, "given")
    with pytest.raises(slides.SlideError, match="not a plausible"):
        slides.open_slide(bare, mpp=1e6)
    with pytest.raises(slides.SlideError, match="larger than the limit") as err:
        slides.open_slide(slide_files[0]["path"], max_pixels=1000 * 1000)
    assert err.value.http_status == 413
    slide, info = slides.open_slide(slide_files[0]["path"])
    with pytest.raises(slides.SlideError, match="tissue tiles") as err:
        slides.map_slide(slide, info, DarkPredictor(), patch=PATCH, target_mpp=TARGET, max_tiles=10)
    assert err.value.http_status == 413
    # A plain strip TIFF or PNG is an image, not a slide: the upload path takes it.
    strip = synthetic_slide.write_plain_tiff(
        str(tmp_path / "strip.tif"), np.zeros((60, 60, 3), np.uint8), tile=None
    )
    png = tmp_path / "patch.png"
    Image.new("RGB", (50, 50)).save(png)
    assert not slides.is_slide_path(strip) and not slides.is_slide_path(str(png))
    assert slides.is_slide_path(slide_files[1]["path"]) and slides.is_slide_path(str(text))


def test_card_records_the_training_scale_with_a_default_for_older_cards():
    assert model_card.microns_per_pixel({"task": "idc", "input_contract": {}}) == 4.0
    assert (
        model_card.microns_per_pixel({"task": "idc", "input_contract": {"microns_per_pixel": 2.0}})
        == 2.0
    )
    assert model_card.microns_per_pixel({"task": "busi"}) is None
    fields = model_card.trainer_fields(
        config={
            "class_names": ["a", "b"],
            "positive_index": 1,
            "model_size": [64, 64],
            "task": "idc",
        },
        signature="s",
        input_description="i",
        outputs={},
        parameters={"total": 1},
        history={},
        seconds=1.0,
    )
    assert fields["input_contract"]["microns_per_pixel"] == 4.0
    card = {**fields, "model_name": "m", "version": 1, "pushed_at": "2026-01-01T00:00:00Z"}
    model_card.validate(card)
    with pytest.raises(model_card.CardError, match="microns_per_pixel"):
        model_card.validate(
            {**card, "input_contract": {**card["input_contract"], "microns_per_pixel": -1}}
        )


def test_dzi_tiles_come_from_the_slide(slide_files):
    cache = slides.SlideCache(size=1)
    _, info, deepzoom = cache.get(slide_files[0]["path"])
    xml = slides.dzi_xml(deepzoom)
    assert f'Width="{info.width}"' in xml and f'Height="{info.height}"' in xml
    top = deepzoom.level_count - 1
    tile = Image.open(io.BytesIO(slides.dzi_tile(deepzoom, top, 0, 0)))
    assert tile.format == "JPEG" and tile.width <= slides.DZI_TILE + 2 * slides.DZI_OVERLAP
    with pytest.raises(slides.SlideError) as err:
        slides.dzi_tile(deepzoom, top + 1, 0, 0)
    assert err.value.http_status == 404
    cache.get(slide_files[1]["path"])  # the first is closed, the second kept
    assert len(cache._items) == 1
