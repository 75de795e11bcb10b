"""ImageExampleGen at scale: its Beam graph does not carry the file list in its transform
names, and records are written in a seeded random order (no Beam Reshuffle).

Beam names an unlabelled ptransform_fn after its first argument; with the candidates
there, every sub-transform's name held str() of every file, copied into the pipeline
proto and each bundle's metrics: ~110 KB of memory per image (issue 13, bench/scale.py).
"""
import apache_beam as beam

from components.image_ingest import executor, layouts

N = 200


def _candidates():
    return [layouts.Candidate(path=f"/data/idc/{i // 50}/0/{i // 50}_idx5_x{i}_y1_class0.png",
                              rel=f"{i // 50}/0/{i // 50}_idx5_x{i}_y1_class0.png", label=0,
                              patient_id=str(i // 50), masks=(), sha256="0" * 64) for i in range(N)]


def test_transform_names_do_not_grow_with_the_file_list(tmp_path):
    ingest = executor.Executor()
    ingest._source = {"candidates": _candidates(), "validation": "structure", "shard_size": 50,
                      "outcomes_dir": str(tmp_path), "include_masks": False}
    pipeline = beam.Pipeline()
    _ = pipeline | "InputToRecord" >> ingest.GetInputSourceToExamplePTransform()({}, "")
    names = [t.unique_name for t in pipeline.to_runner_api().components.transforms.values()]
    assert any("ImagesToExample" in name for name in names)
    assert max(len(name) for name in names) < 200, max(names, key=len)[:300]


def test_write_order_is_a_seeded_permutation():
    candidates = _candidates()
    order = executor.write_order(candidates)
    assert sorted(c.rel for c in order) == sorted(c.rel for c in candidates)
    assert order == executor.write_order(candidates)  # same tree, same files
    assert [c.rel for c in order] != [c.rel for c in candidates]
    # patients are interleaved: the first 50 records do not come from one patient
    assert len({c.patient_id for c in order[:50]}) > 1
