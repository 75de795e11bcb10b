"""Fixes that let TFX 1.16's container entrypoints run under open-source Kubeflow
Pipelines 2 (its driver and launcher), and keep running under Vertex AI Pipelines.

Who calls it: the pipeline image (deploy/pipeline.Dockerfile runs
``python -m pipeline.compat.kfp_shim --install``, which writes a ``.pth`` file so that every
Python process in the image calls `install()`), and `breastdx pipeline dry-run`
(pipeline/compat/dry_run.py), which puts the same hook on the task processes it starts.
`install()` only registers an import hook: each fix is applied when TFX imports the
module it mends, so processes that never import them pay nothing.

The incompatibilities (TFX 1.15-1.17; the first five are sky-uk/kfp-operator's
provider-service/kfp/tfx-patch/README.md, the facts are from kubeflow/pipelines
backend/src/v2/metadata/client.go and TFX's container/ sources):

1. ``system.*`` schema titles (``system.Model``, ``system.Dataset`` ...) are not in
   ``compiler_utils.TITLE_TO_CLASS_PATH``, so TFX tries to import "system.Model".
2. Input artifacts the KFP 2 driver resolves from ML Metadata carry an *empty*
   ``instanceSchema`` (``OutputArtifact.ToRuntimeArtifact`` sets ``Schema: ""``, "TODO:
   figure out how to get schema"), or no type at all; TFX's ``_retrieve_class_path`` does
   ``yaml.safe_load("").get(...)`` on None (or reads an unbound title).
3. Without a type, or with a ``system.*`` one, the TFX class must be inferred from the
   artifact's metadata keys (``split_names`` -> Examples, ``pushed`` -> PushedModel ...).
4. The component's inputs spec (``--json_serialized_inputs_spec_args``, compiled into
   every task) knows each input's type: `kubeflow_v2_run_executor` does not use it for
   artifacts. Here each untyped input artifact takes its type from that spec first
   (read from the task's command line: the entrypoint runs as ``__main__``).
5. The KFP launcher mishandles nested model folders on GCS (directory marker blobs
   block ``MkdirAll`` for ``<model>/Format-Serving/...``); the model is written flat in
   its artifact folder instead. Vertex AI needs TFX's own layout, so this one applies
   only under the open-source launcher, recognised by the ``KFP_POD_NAME`` variable its
   Argo compiler sets on every task pod (Vertex sets none).
6. Directory markers. TensorFlow's GCS file system writes a zero-byte ``dir/`` object on
   every ``makedirs``/``mkdir`` (ImportSchemaGen through ``fileio.makedirs``, SavedModel
   folders, the project's own executors on older images). KFP's launcher downloads each
   input artifact blob by blob (backend/src/v2/objectstore/object_store.go ``DownloadBlob``):
   the marker ``<uri>/`` is written as a file at the artifact's path and the next object's
   ``MkdirAll`` fails ("not a directory"). After the executor, before its outputs are
   reported, every marker at or under each output artifact's URI is deleted (google-cloud-
   storage; the dry run's stand-in store through `set_marker_store`; the task's identity
   needs ``storage.objects.list`` and ``.delete`` on the bucket). Open-source KFP only, as
   fix 5 (Vertex downloads nothing).

Index: each fix is a workaround (what it patches; the upstream cause; the versions it
applies to; when to delete it). tests/test_kfp_shim.py has a test per fix that fails when
the upstream behaviour it relies on changes, where that can be checked here.

1. ``compiler_utils.TITLE_TO_CLASS_PATH``; KFP's driver hands on ``system.*`` titles;
   TFX 1.15-1.17 on KFP 2.x; delete when TFX maps ``system.*`` titles itself.
2-3. ``kubeflow_v2_entrypoint_utils._parse_raw_artifact``; the driver's empty schema
   (``ToRuntimeArtifact``'s TODO); TFX 1.15-1.17 on KFP 2.x; delete when the driver sends
   the type, or TFX reads an empty one.
4. ``kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict``; TFX ignores its own inputs spec
   for artifacts; TFX 1.15-1.17; delete when TFX types inputs from the spec.
5. ``path_utils.serving_model_dir``; kubeflow/pipelines#13476; open-source KFP 2.0-2.16
   (not Vertex); delete when the cluster's KFP release has fix PR #13537.
6. ``kubeflow_v2_entrypoint_utils.translate_executor_output``; kubeflow/pipelines#13476 (fix
   PR #13537, unmerged) and TF's GCS markers (TF <= 2.16's file system); open-source KFP
   2.0-2.16; delete when the cluster's KFP release has PR #13537 (the dry run's launcher,
   pipeline/compat/kfp_launcher.py, then follows the fixed ``DownloadBlob``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ENTRYPOINT_UTILS = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_entrypoint_utils"
COMPILER_UTILS = "tfx.orchestration.kubeflow.v2.compiler_utils"
PATH_UTILS = "tfx.utils.path_utils"
INPUT_PROCESSOR = "tfx.components.example_gen.input_processor"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
OPEN_SOURCE_KFP_ENV = "KFP_POD_NAME"  # set on every task pod by KFP's argocompiler
PTH_NAME = "breastdx_kfp_shim.pth"

# Fix 1: system.* titles and the TFX class each stands for.
SYSTEM_TITLES = {
    "system.Model": "tfx.Model",
    "system.Dataset": "tfx.Examples",
    "system.Statistics": "tfx.ExampleStatistics",
    "system.Metrics": "tfx.ModelEvaluation",
    "system.Artifact": "tfx.Artifact",
}
# Fix 3: metadata keys that only one TFX type writes, checked in order.
KEY_RULES = (
    ("split_names", "tfx.Examples"),
    ("pushed_destination", "tfx.PushedModel"),
    ("pushed", "tfx.PushedModel"),
    ("blessed", "tfx.ModelBlessing"),
)


def _title_of(type_schema: Any) -> str | None:
    """The schema title of an ArtifactTypeSchema, None when it has none (fix 2)."""
    import yaml

    kind = type_schema.WhichOneof("kind")
    if kind == "schema_title":
        return type_schema.schema_title or None
    if kind == "instance_schema":
        data = yaml.safe_load(type_schema.instance_schema or "") or {}
        return data.get("title") if isinstance(data, dict) else None
    return None


def infer_title(title: str | None, metadata_keys: Any) -> str:
    """The TFX title for an artifact whose title is missing or a ``system.*`` one (fixes 1, 3)."""
    if title and not title.startswith("system."):
        return title
    keys = set(metadata_keys)
    for key, tfx_title in KEY_RULES:
        if key in keys:
            return tfx_title
    return SYSTEM_TITLES.get(title or "", "tfx.Artifact")


def normalize_type(artifact_pb: Any) -> None:
    """Gives a RuntimeArtifact a schema title TFX can map to a class (fixes 1-3)."""
    title = _title_of(artifact_pb.type)
    fixed = infer_title(title, artifact_pb.metadata.fields.keys())
    if fixed != title or artifact_pb.type.WhichOneof("kind") != "schema_title":
        artifact_pb.type.Clear()
        artifact_pb.type.schema_title = fixed


def enrich_artifact_map(artifacts: Any, inputs_spec: Any) -> int:
    """Copies each input's type from the component's inputs spec into artifacts of an
    ``ExecutorInput.inputs.artifacts`` map that came without a usable one (fix 4; output
    artifacts are typed by the driver from the outputs spec, and keep theirs). Returns
    how many were typed."""
    typed = 0
    for key, artifact_list in artifacts.items():
        spec = inputs_spec.artifacts.get(key) if inputs_spec is not None else None
        if spec is None:
            continue
        for artifact_pb in artifact_list.artifacts:
            if _title_of(artifact_pb.type) in (None, *SYSTEM_TITLES):
                artifact_pb.type.CopyFrom(spec.artifact_type)
                typed += 1
    return typed


def inputs_spec_from_argv(argv: list[str] | None = None) -> Any:
    """The ComponentInputsSpec TFX compiled into this task's arguments, or None.

    The entrypoints run as ``python -m …``, so their own functions cannot be wrapped;
    the spec is read from the process's command line, where the compiled task put it."""
    argv = sys.argv if argv is None else argv
    if INPUTS_SPEC_FLAG not in argv[:-1]:
        return None
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = pipeline_spec_pb2.ComponentInputsSpec()
    json_format.Parse(argv[argv.index(INPUTS_SPEC_FLAG) + 1], spec, ignore_unknown_fields=True)
    return spec


def custom_artifact_class_path(title: str) -> str:
    """A class path for a custom artifact type TFX would import by its schema title
    (``breastdx.EvaluationReport`` is a type name, not a module path): an Artifact subclass
    with that TYPE_NAME, made here once, so the type name survives the round trip."""
    from tfx.types import artifact

    name = "Custom_" + "".join(c if c.isalnum() else "_" for c in title)
    if name not in globals():
        globals()[name] = type(
            name, (artifact.Artifact,), {"TYPE_NAME": title, "__module__": __name__}
        )
    return f"{__name__}.{name}"


def _patch_entrypoint_utils(module: Any) -> None:
    original_artifact = module._parse_raw_artifact  # pylint: disable=protected-access
    original_dict = module.parse_raw_artifact_dict
    original_class_path = module._retrieve_class_path  # pylint: disable=protected-access

    def retrieve_class_path(type_schema):
        from tfx.utils import import_utils

        path = original_class_path(type_schema)
        try:
            import_utils.import_class_by_path(path)
            return path
        except ImportError:  # a custom type: TFX takes its title for an import path
            return custom_artifact_class_path(path)

    def parse_raw_artifact(artifact_pb, name_from_id):
        normalize_type(artifact_pb)
        return original_artifact(artifact_pb, name_from_id)

    def parse_raw_artifact_dict(inputs_dict, name_from_id=None):
        inputs_spec = inputs_spec_from_argv()
        if inputs_spec is not None:
            enrich_artifact_map(inputs_dict, inputs_spec)
        return original_dict(inputs_dict, name_from_id)

    module._parse_raw_artifact = parse_raw_artifact  # pylint: disable=protected-access
    module.parse_raw_artifact_dict = parse_raw_artifact_dict
    module._retrieve_class_path = retrieve_class_path  # pylint: disable=protected-access
    if os.environ.get(OPEN_SOURCE_KFP_ENV):
        original_translate = module.translate_executor_output

        def translate_executor_output(output_dict, name_from_id):
            delete_output_markers(output_dict)
            return original_translate(output_dict, name_from_id)

        module.translate_executor_output = translate_executor_output


class GcsMarkerStore:
    """Deletes directory marker objects on GCS (fix 6), with google-cloud-storage."""

    def __init__(self):
        self._client = None

    def delete_markers(self, uri: str) -> int:
        if not uri.startswith("gs://"):
            return 0
        if self._client is None:
            from google.cloud import storage

            self._client = storage.Client()
        bucket_name, _, key = uri[len("gs://") :].partition("/")
        bucket = self._client.bucket(bucket_name)
        prefix = key.rstrip("/") + "/"
        markers = [
            blob
            for blob in self._client.list_blobs(bucket_name, prefix=prefix)
            if blob.name.endswith("/") and not blob.size
        ]
        for blob in markers:
            bucket.blob(blob.name).delete()
        return len(markers)


_MARKER_STORE: list[Any] = []


def set_marker_store(store: Any) -> None:
    """The store whose ``delete_markers(uri) -> int`` fix 6 calls (default: GCS)."""
    _MARKER_STORE[:] = [store]


def delete_output_markers(output_dict: Any) -> int:
    """Fix 6: deletes the directory markers under every output artifact of a task.

    A failure to delete is logged, not raised: the outputs are written, and the consumer's
    launcher will say which marker blocked it."""
    store = _MARKER_STORE[0] if _MARKER_STORE else GcsMarkerStore()
    deleted = 0
    for artifacts in output_dict.values():
        for artifact in artifacts:
            try:
                deleted += store.delete_markers(artifact.uri)
            except Exception as err:  # pylint: disable=broad-except
                log.warning(
                    "kfp_shim: could not delete directory markers under %s: %s", artifact.uri, err
                )
    if deleted:
        log.info("kfp_shim: deleted %d directory marker object(s) under the outputs", deleted)
    return deleted


def _patch_compiler_utils(module: Any) -> None:
    for system_title, tfx_title in SYSTEM_TITLES.items():
        if tfx_title in module.TITLE_TO_CLASS_PATH:
            module.TITLE_TO_CLASS_PATH.setdefault(
                system_title, module.TITLE_TO_CLASS_PATH[tfx_title]
            )
    # "tfx.Artifact" (a custom type's fallback) has no class of its own in TFX 1.16.
    module.TITLE_TO_CLASS_PATH.setdefault("tfx.Artifact", f"{__name__}.GenericArtifact")
    module.TITLE_TO_CLASS_PATH.setdefault("system.Artifact", f"{__name__}.GenericArtifact")


def _patch_path_utils(module: Any) -> None:
    if not os.environ.get(OPEN_SOURCE_KFP_ENV):
        return  # Vertex AI and local runs: TFX's own layout

    def serving_model_dir(output_uri: str, is_old_artifact: bool = False) -> str:
        del is_old_artifact
        return output_uri

    module.serving_model_dir = serving_model_dir


def _patch_input_processor(module: Any) -> None:
    """Vertex runs TFX's stock Kubeflow V2 ExampleGen driver as ImageExampleGen's
    pre-cache check; it builds ``input_processor.FileBasedInputProcessor``: for the image
    tree's split pattern, build the one that fingerprints every file under the root
    (components/image_ingest/driver.py). Other ExampleGens keep TFX's."""
    stock = module.FileBasedInputProcessor

    class FileBasedInputProcessor(stock):
        STOCK = stock  # components/image_ingest/driver.py builds on TFX's own class

        def __new__(cls, input_base_uri, splits, range_config=None):
            # Imported here: this patch runs while TFX's example_gen.driver is importing.
            from components.image_ingest import driver as image_driver

            return image_driver.input_processor_for(input_base_uri, splits, range_config)

    module.FileBasedInputProcessor = FileBasedInputProcessor


PATCHES: dict[str, Callable[[Any], None]] = {
    ENTRYPOINT_UTILS: _patch_entrypoint_utils,
    COMPILER_UTILS: _patch_compiler_utils,
    PATH_UTILS: _patch_path_utils,
    INPUT_PROCESSOR: _patch_input_processor,
}


def _generic_artifact_class():
    from tfx.types import artifact

    class GenericArtifact(artifact.Artifact):
        """An artifact of a type TFX has no class for (``system.Artifact``)."""

        TYPE_NAME = "system.Artifact"

    return GenericArtifact


def __getattr__(name: str) -> Any:  # GenericArtifact is built on first use: importing TFX is slow
    if name == "GenericArtifact":
        value = _generic_artifact_class()
        globals()[name] = value
        return value
    raise AttributeError(name)


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, patch: Callable[[Any], None]):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)
        log.debug("kfp_shim: patched %s", module.__name__)

    def __getattr__(self, name):  # get_code, get_source, ... for runpy and inspect
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def install() -> None:
    """Applies the fixes to modules already imported and hooks those imported later."""
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def pth_line() -> str:
    return "import pipeline.compat.kfp_shim as _breastdx_kfp_shim; _breastdx_kfp_shim.install()\n"


def install_pth(site_dir: str | None = None) -> str:
    """Writes the ``.pth`` file that installs the shim in every Python process of the
    environment (the image build calls this). Returns its path."""
    from pipeline.compat import write_pth

    return write_pth(PTH_NAME, pth_line(), site_dir)


if __name__ == "__main__":
    if sys.argv[1:] != ["--install"]:
        print("usage: python -m pipeline.compat.kfp_shim --install", file=sys.stderr)
        sys.exit(2)
    print(install_pth())
    print(json.dumps(sorted(PATCHES)))
