"""Lesion segmentation (BUSI masks): metrics, the U-Net pipeline variant's module files."""
