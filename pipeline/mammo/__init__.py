"""Mammography (CBIS-DDSM): readers, resize, patch sets, patch and whole-image
classifiers, sliding-window heatmaps, and the `breastdx mammo-demo` verb."""
