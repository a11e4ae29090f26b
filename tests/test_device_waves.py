"""Waveform mixup on the device (c2f/data/device_waves.py): the clips kept on the training
device and mixed there give the model input the host's mixing gives, for every method; a
batch then carries no waveform; evaluation reads feature tables even in a mixup recipe."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from c2f.compression import BaseInput, create_compression
from c2f.data.dataset import collate_skipping
from c2f.data.frontend import FeatureSettings, Frontend
from c2f.data.manifest import load_manifest
from c2f.spec import TrainerSpec
from c2f.train.distributed import World
from c2f.train.phase_data import build_phase_data, data_bundle
from tests.test_manifest import write_csv, write_manifest

# under one window (kaldi pads it), shorter than a phase, longer than one (cut), in between
SECONDS = (0.015, 0.2, 0.3, 0.75, 1.1, 0.45)
BASE = BaseInput(frame_shift_ms=10.0, target_length=48, patch=(16, 16), time_mask=8)


@pytest.fixture(scope="module", params=["FLOAT", "PCM_16"])
def manifest(tmp_path_factory, request):
    """Float WAVs (kept as float32) or 16-bit ones (kept as int16, on the device too)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    entries = []
    for i, seconds in enumerate(SECONDS):
        wave = rng.standard_normal(int(seconds * 16000)) * 0.1 + 0.05 * (i - 2)  # DC offsets
        soundfile.write(folder / f"{i}.wav", wave.astype(np.float32), 16000,
                        subtype=request.param)
        entries.append({"wav": str(folder / f"{i}.wav"),
                        "labels": ("/m/dog", "/m/cat", "/m/car")[i % 3]})
    path = write_manifest(folder, {"data": entries})
    return load_manifest(path, write_csv(folder))


def phase_data(manifest, method: str, c: int, settings: FeatureSettings, cache_features=True):
    compression = create_compression(method)
    frontend = Frontend(settings, compression.phase_input(BASE, c), compression, c,
                        on_device=True)
    bundle = data_bundle(manifest, manifest, settings, TrainerSpec(cache_audio=True), False)
    return build_phase_data(frontend, bundle, seed=3, world=World(), device=torch.device("cpu"),
                            batch_size=len(SECONDS), eval_batch_size=4, num_workers=0,
                            draw=None, cache_features=cache_features)


@pytest.mark.parametrize("method, c", [("fshift", 1), ("fshift", 4), ("pool_avg", 4),
                                       ("patch_pi", 4)])
def test_clips_mixed_on_the_device_give_the_input_the_host_mix_gives(manifest, method, c):
    settings = FeatureSettings(16000, 128, -8.0, 6.0, freq_mask=24, mixup=0.7, noise=True)
    data = phase_data(manifest, method, c, settings)
    assert data.mixing is not None and "train" not in data.features
    pcm16 = soundfile.info(str(manifest.clips[0].path)).subtype == "PCM_16"
    assert data.mixing.flat.dtype == (torch.int16 if pcm16 else torch.float32)
    assert not data.train_set.waveforms and not data.eval.dataset.dataset.waveforms
    mixed = 0
    for epoch in range(3):
        data.train_keys.set_epoch(0, epoch)
        batch = next(iter(data.train))
        assert batch["size"] == len(SECONDS) and batch["input"].numel() == 0
        mixed += int((batch["lam"] < 1).sum())
        keys = [(0, epoch, int(i)) for i in batch["index"]]
        host = collate_skipping([data.train_set.item(key) for key in keys])
        torch.testing.assert_close(batch["target"], host["target"], rtol=0, atol=0)
        torch.testing.assert_close(data.inputs(batch, train=True),
                                   data.inputs(host, train=True, cached=False),
                                   atol=1e-4, rtol=0)
    assert mixed >= 3  # mixed and unmixed clips both checked


def test_evaluation_reads_tables_in_a_mixup_recipe_and_false_keeps_waveforms(manifest):
    """On CPU `auto` leaves the mixing to the host (faster there) but reads evaluation's
    fbanks from a table; `false` keeps every waveform."""
    settings = FeatureSettings(16000, 128, -8.0, 6.0, mixup=0.5)
    data = phase_data(manifest, "fshift", 2, settings, cache_features="auto")
    assert data.mixing is None and data.train_set.waveforms
    batch = next(iter(data.eval))
    assert batch["input"].numel() == 0 and "eval" in data.features
    host = collate_skipping([data.eval.dataset.dataset.item(int(i)) for i in batch["index"]])
    torch.testing.assert_close(data.inputs(batch, train=False),
                               data.inputs(host, train=False, cached=False), atol=1e-5, rtol=0)
    plain = phase_data(manifest, "fshift", 2, settings, cache_features=False)
    assert plain.mixing is None and not plain.features
    assert plain.train_set.waveforms and plain.eval.dataset.dataset.waveforms
