"""Weights packed into flat byte buckets come back bit-equal, whatever their dtype and size."""

import torch

from alignkit.orchestration.ray.sync import pack, unpack


def test_buckets_round_trip_bit_equal():
    g = torch.Generator().manual_seed(0)
    named = [
        ("a", torch.randn(3, 5, generator=g)),
        ("b", torch.randn(7, generator=g).to(torch.bfloat16)),  # numpy has no bfloat16: bytes travel
        ("big", torch.randn(64, 64, generator=g)),  # larger than a bucket: a bucket of its own
        ("c", torch.randn(2, 3, generator=g).half()),
        ("i", torch.arange(5)),
        ("empty", torch.zeros(0)),
    ]
    buckets = list(pack(iter(named), bucket_bytes=1024))
    assert [[s.name for s in b.slots] for b in buckets] == [["a", "b"], ["big"], ["c", "i", "empty"]]
    out = [x for b in buckets for x in unpack(b)]
    assert [n for n, _ in out] == [n for n, _ in named]
    for (_, t), (_, u) in zip(named, out, strict=True):
        assert u.dtype == t.dtype and u.shape == t.shape and torch.equal(u, t)


def test_pack_copies_as_tensors_arrive():
    # full_weights yields LoRA-merged tensors that change once the next one is asked for
    t = torch.ones(4)

    def changing():
        yield "x", t
        t.zero_()
        yield "y", torch.ones(2)

    (bucket,) = pack(changing())
    assert dict(unpack(bucket))["x"].tolist() == [1.0] * 4
