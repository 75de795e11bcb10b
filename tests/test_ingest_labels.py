"""ImageExampleGen at scale: its Beam graph does not carry the file list, records are
written in a seeded random order (no Beam Reshuffle), and each record's split is TFX's.

Beam named an unlabelled ptransform_fn after its first argument (str() of every file:
~110 KB of memory per image), and a file list given to beam.Create or a DoFn is pickled
into the pipeline proto and every bundle's descriptor (bench/scale.py and
bench/ingest.py): the executor now hands Beam shard numbers and each shard reads its
files from a small file of its own.
"""

import dataclasses

import apache_beam as beam
import tensorflow as tf

from breastdx_core import image_files
from components.image_ingest import example_encoder, executor, layouts

N = 200
OUTPUT_CONFIG = (
    '{"split_config": {"splits": [{"name": "train", "hash_buckets": 16}, {"name": "eval", '
    '"hash_buckets": 2}, {"name": "test", "hash_buckets": 2}], "partition_feature_name": "patient_id"}}'
)


def _candidates(n=N):
    return [
        layouts.Candidate(
            path=f"/data/idc/{i // 50}/0/{i // 50}_idx5_x{i}_y1_class0.png",
            rel=f"{i // 50}/0/{i // 50}_idx5_x{i}_y1_class0.png",
            label=0,
            patient_id=str(i // 50),
            masks=(),
            sha256="0" * 64,
        )
        for i in range(n)
    ]


def _graph_bytes(tmp_path, n, shard_size=50):
    scratch = tmp_path / f"scratch-{n}"
    scratch.mkdir()
    shards = executor._write_shard_inputs(_candidates(n), shard_size, str(scratch))
    read = executor._ReadShard(
        "structure", str(scratch), [str(tmp_path / "train")], OUTPUT_CONFIG, shards, n
    )
    pipeline = beam.Pipeline()
    executor.build_pipeline(pipeline, shards, read)
    proto = pipeline.to_runner_api()
    names = [t.unique_name for t in proto.components.transforms.values()]
    return len(proto.SerializeToString()), names


def test_the_beam_graph_does_not_carry_the_file_list(tmp_path):
    small, names = _graph_bytes(tmp_path, 200)
    large, _ = _graph_bytes(tmp_path, 20000)
    assert any("ReadAndWrite" in name for name in names)
    assert max(len(name) for name in names) < 200, max(names, key=len)[:300]
    # a shard number per 50 files, nothing per file (a file list costs ~100 bytes per file)
    assert (large - small) / (20000 - 200) < 1.0, (small, large)


def test_shard_inputs_round_trip(tmp_path):
    candidates = _candidates(120)
    candidates[3] = dataclasses.replace(
        candidates[3], masks=("/m/a_mask.png", "/m/a_mask_1.png"), sha256=""
    )
    shards = executor._write_shard_inputs(candidates, 50, str(tmp_path))
    assert shards == 3
    assert [
        c for i in range(shards) for c in executor._read_shard_inputs(str(tmp_path), i)
    ] == candidates


def test_the_splitter_is_tfxs_partition_function():
    from tfx.components.example_gen import base_example_gen_executor
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils

    config = example_gen_pb2.Output()
    proto_utils.json_to_proto(OUTPUT_CONFIG, config)
    splitter = executor._Splitter(OUTPUT_CONFIG)
    info = image_files.ImageInfo("png", 50, 50, 3)
    seen = set()
    for candidate in _candidates(2000)[::10]:
        candidate = dataclasses.replace(candidate, patient_id=f"p{candidate.rel}")  # 200 patients
        record = example_encoder.serialize_example(b"png", info, candidate)
        expected = base_example_gen_executor._PartitionFn(
            tf.train.Example.FromString(record), 3, [16, 18, 20], config.split_config
        )
        assert splitter(record, candidate) == splitter(record, candidate) == expected
        seen.add(expected)
    assert seen == {0, 1, 2}


def test_write_order_is_a_seeded_permutation():
    candidates = _candidates()
    order = executor.write_order(candidates)
    assert sorted(c.rel for c in order) == sorted(c.rel for c in candidates)
    assert order == executor.write_order(candidates)  # same tree, same files
    assert [c.rel for c in order] != [c.rel for c in candidates]
    # patients are interleaved: the first 50 records do not come from one patient
    assert len({c.patient_id for c in order[:50]}) > 1
