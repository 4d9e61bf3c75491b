"""The bucket layout every weight transport shares, and the CUDA IPC bookkeeping that needs no GPU:
which shared bucket a worker picks, and the device index rewritten for the receiving process."""

import torch

from alignkit.rollout import gpu_transport
from alignkit.rollout.buckets import pack_buckets, unpack_bucket
from alignkit.rollout.gpu_transport import IpcBucket, open_shared, pick


def test_buckets_are_allocated_on_the_tensors_device_and_round_trip():
    asked = []

    def alloc(nbytes, device):
        asked.append((nbytes, device))
        return torch.empty(nbytes, dtype=torch.uint8, device=device)

    named = [("w", torch.arange(6, dtype=torch.float32).view(2, 3)), ("h", torch.ones(3, dtype=torch.float16)),
             ("big", torch.zeros(300)), ("s", torch.tensor(2.5))]
    buckets = list(pack_buckets(iter(named), 256, alloc))
    # w: 24 -> 64 bytes, h: 6 -> 64; big (1200) gets its own; s starts a new one
    assert [[s.name for s in slots] for slots, _ in buckets] == [["w", "h"], ["big"], ["s"]]
    assert [[s.offset for s in slots] for slots, _ in buckets] == [[0, 64], [0], [0]]
    assert asked == [(256, torch.device("cpu")), (1216, torch.device("cpu")), (256, torch.device("cpu"))]
    assert [len(data) for _, data in buckets] == [128, 1216, 64]  # only the used bytes travel
    out = dict(x for slots, data in buckets for x in unpack_bucket(slots, data))
    for name, t in named:
        assert out[name].dtype == t.dtype and out[name].shape == t.shape and torch.equal(out[name], t)


def _uuids(monkeypatch, by_index):
    monkeypatch.setattr(gpu_transport, "device_uuid", lambda d: by_index[d.index or 0])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(by_index))


def test_a_worker_picks_the_bucket_on_its_own_gpu(monkeypatch):
    _uuids(monkeypatch, ["GPU-a", "GPU-b"])
    a, b = IpcBucket([], (None, ()), "GPU-a"), IpcBucket([], (None, ()), "GPU-b")
    assert pick([a, b], torch.device("cuda", 1)) is b
    assert pick([a], torch.device("cuda", 1)) is a  # no trainer on its GPU: read another one's


def test_the_handle_is_opened_on_the_receivers_index_of_the_same_gpu(monkeypatch):
    _uuids(monkeypatch, ["GPU-x", "GPU-y"])  # the sender called GPU-y device 0
    seen = []
    handle = (lambda *args: seen.append(args) or "tensor", ("cls", 8, (1,), 0, "storage", "dtype", 0, b"h"))
    assert open_shared(IpcBucket([], handle, "GPU-y")) == "tensor"
    assert seen[0][6] == 1 and seen[0][7] == b"h"


def test_a_gpu_this_process_cannot_see_is_an_error(monkeypatch):
    import pytest

    from alignkit.errors import AlignkitError

    _uuids(monkeypatch, ["GPU-x"])
    with pytest.raises(AlignkitError, match="GPU-z is not visible"):
        open_shared(IpcBucket([], (None, (0,) * 8), "GPU-z"))
