"""ImageExampleGen's driver: fingerprints every file under the image root.

TFX runs the driver before the executor (LocalDagRunner through the component's
``DRIVER_CLASS``; Vertex AI Pipelines through the compiled ``pre_cache_check`` hook, which
runs TFX's stock Kubeflow V2 ExampleGen driver, which `pipeline/compat/kfp_shim.py` points
here). The fingerprint becomes an exec property, hence part of TFX's cache key: a
changed, added or removed image makes the next run ingest again.

TFX's own file-based driver globs the split pattern and fingerprints the matches; a glob
does not recurse, and the image layouts are two or three folders deep, so this one walks
the tree (`layouts.fingerprint`: relative path, size and modification time of each file).
"""

from __future__ import annotations

from collections.abc import Iterable

from tfx.components.example_gen import driver, input_processor
from tfx.proto import example_gen_pb2, range_config_pb2

from components.image_ingest import layouts

# The input split pattern that means "every file under input_base" (executor.py uses it).
IMAGE_TREE_PATTERN = "**"
# TFX's own processor: under pipeline/compat/kfp_shim.py the module's name holds a dispatcher
# that calls `input_processor_for` (and keeps TFX's class as ``STOCK``).
_TFX_FILE_BASED = getattr(
    input_processor.FileBasedInputProcessor, "STOCK", input_processor.FileBasedInputProcessor
)


class ImageTreeInputProcessor(_TFX_FILE_BASED):
    """One span (0), no versions; the fingerprint covers the whole tree."""

    def resolve_span_and_version(self) -> tuple[int, int | None]:
        self._fingerprint = "image_tree:" + layouts.fingerprint(self._input_base_uri)
        return 0, None

    def get_pattern_for_span_version(self, pattern: str, span: int, version: int | None) -> str:
        return pattern


def input_processor_for(
    input_base_uri: str,
    splits: Iterable[example_gen_pb2.Input.Split],
    range_config: range_config_pb2.RangeConfig | None = None,
) -> input_processor.InputProcessor:
    """The image-tree processor for ImageExampleGen's split pattern, TFX's own otherwise
    (so the Kubeflow V2 driver, patched to call this, still serves other ExampleGens)."""
    splits = list(splits)
    if len(splits) == 1 and splits[0].pattern == IMAGE_TREE_PATTERN and range_config is None:
        return ImageTreeInputProcessor(input_base_uri, splits, range_config)
    return _TFX_FILE_BASED(input_base_uri, splits, range_config)


class ImageTreeDriver(driver.FileBasedDriver):
    """FileBasedDriver with the recursive fingerprint."""

    def get_input_processor(
        self,
        splits: Iterable[example_gen_pb2.Input.Split],
        range_config: range_config_pb2.RangeConfig | None = None,
        input_base_uri: str | None = None,
    ) -> input_processor.InputProcessor:
        if not input_base_uri:
            raise ValueError("ImageExampleGen needs input_base (the image root)")
        return input_processor_for(input_base_uri, splits, range_config)
