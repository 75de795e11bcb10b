"""The data contract: feature keys, class maps, image sizes, signature names.

One small module, pure Python (no TensorFlow import), that every stage agrees on:
ImageIngest writes these keys, the Transform module reads them, the Trainer module
builds its head from the class map, the exported signatures use the input and
output names, and the web app and the model server read the same names without
importing TensorFlow.
"""

from __future__ import annotations

import dataclasses

# --- record format (one tf.train.Example per image) -------------------------------
IMAGE_KEY = "image_raw"  # bytes: the file's original encoded bytes, never re-encoded
LABEL_KEY = "label"  # int64: class index into Task.class_names
PATIENT_KEY = "patient_id"  # bytes: the grouping key for splits
HEIGHT_KEY = "height"  # int64, read from the image header
WIDTH_KEY = "width"
DEPTH_KEY = "depth"  # channels in the file (1 grey, 3 RGB, 4 RGBA)
SOURCE_PATH_KEY = "source_path"  # bytes: path relative to the image root
CONTENT_HASH_KEY = "image_sha256"  # bytes: hex SHA-256 of image_raw (duplicates are found by it)

RECORD_KEYS = (
    IMAGE_KEY,
    LABEL_KEY,
    PATIENT_KEY,
    HEIGHT_KEY,
    WIDTH_KEY,
    DEPTH_KEY,
    SOURCE_PATH_KEY,
    CONTENT_HASH_KEY,
)
# Only in the segmentation variant (ImageIngest include_masks=1): the image's lesion mask
# as PNG bytes (the file's own bytes; the union, re-encoded, where an image has several
# masks; b"" where it has none). A target, never a model input.
MASK_KEY = "mask_raw"
TRANSFORMED_MASK_KEY = "mask"  # float32 [H, W] in {0, 1}

# --- Transform outputs ---------------------------------------------------------
TRANSFORMED_IMAGE_KEY = "image"  # float32 [H, W, 3] in [0, 1]
TRANSFORMED_LABEL_KEY = LABEL_KEY
PIXEL_MAX = 255.0  # encoded images are 8-bit; Transform scales by this
MODEL_CHANNELS = 3  # grey images are decoded to 3 channels so every backbone fits

# --- exported signatures ---------------------------------------------------------
SIGNATURE_BYTES = "serving_default"  # [None] tf.string of raw encoded image bytes
SIGNATURE_EXAMPLES = "serving_examples"  # [None] tf.string of serialized tf.Example
SIGNATURE_TRANSFORM = "transform_features"  # for TFMA's preprocessing
SIGNATURE_EXPLAIN = "explain"  # like serving_default, plus a Grad-CAM heatmap
SERVING_INPUT_BYTES = "image_bytes"  # "_bytes" suffix: TF Serving / Vertex AI b64 convention
SERVING_INPUT_EXAMPLES = "examples"
OUTPUT_PROBABILITIES = "probabilities"  # float32 [None, n_classes], rows sum to 1
OUTPUT_CLASS_NAME = "class_name"  # string [None], arg-max class
OUTPUT_CLASS_INDEX = "class_index"  # int64 [None]
OUTPUT_POSITIVE = "positive_probability"  # float32 [None], P(Task.positive_class)
OUTPUT_HEATMAP = "heatmap"  # float32 [None, h, w] in [0, 1], `explain` only
OUTPUT_OOD = "ood_score"  # float32 [None], feature-space distance to the train split (breastdx_core/decision.py)

MODEL_CARD_RELPATH = "assets.extra/model_card.json"  # inside a SavedModel / version dir

RESEARCH_ONLY = "Research use only, not a diagnosis."


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """How an encoded image becomes the model's input tensor.

    Attributes:
        model_size: (height, width) the model sees.
        native_size: (height, width) of a full patch in the data set, or None. When set,
            smaller images (the IDC set's edge patches) are zero-padded and larger ones
            centre-cropped to it first, so every patch keeps the same pixel scale;
            then the result is resized to ``model_size``. When None the image is
            resized to fit ``model_size`` with its aspect ratio kept and padded.
        microns_per_pixel: the training images' scale where they come from slides, or None.
            A whole slide is read at this scale (webapp/slides.py); the card records it.
    """

    model_size: tuple[int, int]
    native_size: tuple[int, int] | None = None
    microns_per_pixel: float | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    """A classification task: class names in label order and how folders map to labels."""

    name: str
    class_names: tuple[str, ...]
    positive_class: str  # the class whose probability is `positive_probability`
    folder_labels: dict[str, int]  # label folder / CSV label value -> class index
    image: ImageSpec
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.positive_class)

    def label_of(self, value: str) -> int | None:
        """Class index of a folder name or CSV label (name or number); None if unknown."""
        value = value.strip()
        if value in self.folder_labels:
            return self.folder_labels[value]
        lowered = value.lower()
        for index, name in enumerate(self.class_names):
            if lowered == name.lower():
                return index
        return None


# IDC patches are 50x50 at 2.5x; 64x64 keeps VGG16's five poolings meaningful (2x2 at
# the last block) at 1.6x the pixels, where the study's 224x224 cost ~20x.
IDC_PATCH = (50, 50)
IDC_MODEL_SIZE = (64, 64)
# The Kaggle IDC patches were cut at 2.5x from slides scanned at 40x (~0.25 um/px at 40x).
IDC_MICRONS_PER_PIXEL = 4.0
BUSI_MODEL_SIZE = (128, 128)
# CBIS-DDSM patches: 224x224 crops of mammograms resized to 1152x896 in the study
# (components/mammo); the synthetic demo's images are 4x smaller, and so are its patches.
CBIS_PATCH_SIZE = 224
CBIS_IMAGE_SIZE = (1152, 896)
CBIS_DEMO_PATCH_SIZE = 56
CBIS_PATCH_CLASSES = (
    "background",
    "calcification_benign",
    "calcification_malignant",
    "mass_benign",
    "mass_malignant",
)

TASKS: dict[str, Task] = {
    "idc": Task(
        name="idc",
        class_names=("IDC-negative", "IDC-positive"),
        positive_class="IDC-positive",
        folder_labels={"0": 0, "1": 1},
        image=ImageSpec(
            model_size=IDC_MODEL_SIZE,
            native_size=IDC_PATCH,
            microns_per_pixel=IDC_MICRONS_PER_PIXEL,
        ),
        description="Invasive ductal carcinoma in 50x50 H&E histopathology patches",
    ),
    "busi": Task(
        name="busi",
        class_names=("normal", "benign", "malignant"),
        positive_class="malignant",
        folder_labels={"0": 0, "1": 1, "2": 2},
        image=ImageSpec(model_size=BUSI_MODEL_SIZE),
        description="Breast ultrasound images: normal, benign or malignant",
    ),
    # Patches of mammograms (components/mammo writes them as <class>/<patient_id>/*.png, so
    # the standard pipeline trains on them too); malignant mass is the positive class.
    "cbis": Task(
        name="cbis",
        class_names=CBIS_PATCH_CLASSES,
        positive_class="mass_malignant",
        folder_labels={str(i): i for i in range(len(CBIS_PATCH_CLASSES))},
        image=ImageSpec(model_size=(CBIS_DEMO_PATCH_SIZE, CBIS_DEMO_PATCH_SIZE)),
        description="CBIS-DDSM mammogram patches: background, calcification or mass, benign or malignant",
    ),
}


def get_task(name: str) -> Task:
    """The task named ``name``; a ValueError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}"
        ) from None


# Object stores, where a folder is only a key prefix: nothing makes folders there (a makedirs
# writes a zero-byte marker object that KFP's launcher later downloads as a file).
OBJECT_STORE_SCHEMES = ("gs://", "s3://")
