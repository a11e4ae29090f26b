"""The device frontend: a batched fbank equal to kaldi's, and the same model input as the
per-clip worker frontend for every method and C."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from c2f import features
from c2f.compression import BaseInput, create_compression, list_compressions
from c2f.data.builtin import BuiltinParams, ensure_builtin
from c2f.data.dataset import FeatureSettings, SpectrogramDataset, collate_skipping
from c2f.data.frontend import Frontend
from c2f.data.manifest import load_manifest

MEAN, STD = -8.3, 5.9  # close to the built-in set's, so the 1e-4 tolerance is realistic
BASE = BaseInput(frame_shift_ms=10.0, target_length=128, patch=(16, 16), time_mask=24)
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    paths = ensure_builtin(tmp_path_factory.mktemp("data"),
                           BuiltinParams(train_per_class=1, eval_per_class=1, clip_seconds=1.28))
    return load_manifest(paths["train"], paths["labels"])


def clips() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tone = torch.sin(torch.arange(24000) * 0.07).unsqueeze(0) + 0.3
    return {"noise 1.5 s": torch.randn(1, 24000, generator=gen) * 0.1,
            "tone with dc 1.5 s": tone,
            "0.3 s": torch.randn(1, 4800, generator=gen),
            "shorter than a window": torch.randn(1, 300, generator=gen),
            "silence": torch.zeros(1, 16000)}


def device_batch(frontend: Frontend, waves: list[torch.Tensor], device: torch.device):
    """What the loop does with the device frontend: clip views padded to a batch, on device."""
    clipped = [frontend.clip(w, None) for w in waves]
    inputs = pad_sequence([view for view, _ in clipped], batch_first=True).to(device)
    offsets = torch.tensor([offset for _, offset in clipped], device=device)
    lengths = torch.tensor([frontend.valid_samples(w) for w in waves], device=device)
    return frontend.batch(inputs, lengths, offsets, None)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("frame_shift_ms", [10.0, 20.0, 40.0, 80.0])  # C = 1, 2, 4, 8
def test_batched_fbank_equals_kaldi_after_normalization(frame_shift_ms, device):
    frames = 100
    settings = FeatureSettings(16000, 128, MEAN, STD)
    phase = create_compression("none").phase_input(
        BaseInput(frame_shift_ms, frames, (16, 16), 0), 1)
    worker = Frontend(settings, phase, create_compression("none"), 1, on_device=False)
    on_device = Frontend(settings, phase, create_compression("none"), 1, on_device=True)
    named = clips()
    expected = torch.stack([worker.clip(w, None)[0] for w in named.values()])
    got = device_batch(on_device, list(named.values()), torch.device(device)).cpu()
    assert got.shape == expected.shape == (len(named), frames, 128)
    for (name, _), a, b in zip(named.items(), got, expected):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def frontend_batches(manifest, method: str, c: int, settings: FeatureSettings):
    """One training batch of every clip through the worker and the device frontend."""
    compression = create_compression(method)

    def batch(on_device: bool) -> torch.Tensor:
        frontend = Frontend(settings, compression.phase_input(BASE, c), compression, c,
                            on_device)
        data = SpectrogramDataset(manifest, frontend, train=True, seed=7)
        items = collate_skipping([data[0, 3, i] for i in range(len(data))])
        return frontend.batch(items["input"], items["length"], items["offset"], items["masks"],
                              items["noise"], items["roll"])
    return batch(False), batch(True)


@pytest.mark.parametrize("method", [m for m in list_compressions() if m != "none"])
@pytest.mark.parametrize("c", [1, 2, 4])
def test_device_and_worker_frontends_give_the_same_training_batch(manifest, method, c):
    settings = FeatureSettings(16000, 128, MEAN, STD, freq_mask=24, mixup=0.5)
    worker, device = frontend_batches(manifest, method, c, settings)
    assert (worker == features.normalize(0.0, MEAN, STD)).any()  # the masks were applied
    torch.testing.assert_close(device, worker, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["fshift", "pool_max", "patch_bl"])
def test_device_and_worker_frontends_add_the_same_noise(manifest, method):
    settings = FeatureSettings(16000, 128, MEAN, STD, freq_mask=24, mixup=0.5, noise=True)
    worker, device = frontend_batches(manifest, method, 4, settings)
    plain, _ = frontend_batches(manifest, method, 4, dataclasses.replace(settings, noise=False))
    assert not torch.allclose(worker, plain, atol=1e-3)
    torch.testing.assert_close(device, worker, atol=1e-4, rtol=0)
