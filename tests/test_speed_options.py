"""The speed options change how a run computes, never what: frontends, audio cache, precision."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch

from c2f.data.builtin import BuiltinParams, ensure_builtin
from c2f.data.errors import DataError
from c2f.data.manifest import Clip, Manifest, load_manifest
from c2f.data.wave_cache import WaveCache, estimated_bytes, should_cache, wave_bytes
from c2f.train.precision import Precision
from tests.conftest import TINY, kill_after_records, read_metrics, run_cli, run_dirs

TWO_PHASE = [*TINY, "logger=disabled", "compression=pool_avg", "schedule=2phase", "schedule.c=2"]


@pytest.mark.slow
def test_frontends_and_audio_cache_train_the_same_run(tmp_path, data_dir):
    """Device frontend + cached audio, AST's waveform mixup done on the device and evaluation
    fbanks read from tables, against the per-clip worker frontend reading and mixing files in
    two workers, with AST's noise on top: the same run (one id), the same numbers up to float
    rounding."""
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    noisy = [*TWO_PHASE, "dataset.noise=true", "dataset.mixup=0.5"]
    run_cli([*noisy, "trainer.cache_features=true"], fast, data_dir)
    run_cli([*noisy, "trainer.frontend=worker", "trainer.cache_audio=false",
             "trainer.num_workers=2"], slow, data_dir)
    [a], [b] = run_dirs(fast), run_dirs(slow)
    assert a.name == b.name
    ra, rb = read_metrics(a), read_metrics(b)
    assert [(r["C"], r["samples"], r["flops"]) for r in ra] == [
        (r["C"], r["samples"], r["flops"]) for r in rb]
    # the first epoch's loss differs only by the fbank's float rounding (1e-5 of the input)
    assert ra[0]["train_loss"] == pytest.approx(rb[0]["train_loss"], rel=1e-4)
    assert ra[-1]["train_loss"] == pytest.approx(rb[-1]["train_loss"], rel=1e-2)


@pytest.mark.slow
def test_fp16_run_keeps_its_grad_scaler_and_resumes_in_another_precision(tmp_path, data_dir):
    runs = tmp_path / "runs"
    kill_after_records([*TWO_PHASE, "trainer.precision=fp16"], 3, runs, data_dir)
    [run] = run_dirs(runs)
    saved = torch.load(run / "ckpt" / "last.pt", weights_only=True)
    assert saved["scaler"]["scale"] > 0  # AST's fp16 recipe: a GradScaler, saved and resumed
    done = saved["state"]["epoch"]
    said = run_cli([*TWO_PHASE, "trainer.precision=bf16"], runs, data_dir).stdout
    [again] = run_dirs(runs)  # the precision is not part of the run's identity
    # said, and kept where config.yaml (now bf16's) cannot say it
    assert "resumes with trainer.precision=bf16 (before: fp16): not part of its identity" in said
    changes = json.loads((again / "plan.json").read_text())["trainer_changes"]
    assert changes == [{"after_epochs": done, "changed": {"trainer.precision": ["fp16", "bf16"]}}]
    records = read_metrics(again)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["train_loss"]) for r in records)
    assert torch.load(again / "ckpt" / "last.pt", weights_only=True)["scaler"] is None
    # scored in fp32 (trainer.eval_precision), as AST's validate: not the bf16 forward's logits
    import dataclasses

    from c2f.data.manifest import load_manifest
    from c2f.trained import load_trained

    trained = load_trained(again, device="cpu")
    data = json.loads((again / "inference.json").read_text())["data"]
    manifest = load_manifest(data["eval_manifest"], data["labels_csv"])
    assert trained.evaluate(manifest)["eval_loss"] == pytest.approx(records[-1]["eval_loss"],
                                                                    rel=1e-6)
    in_bf16 = dataclasses.replace(trained, precision=Precision("bf16", torch.device("cpu")))
    assert in_bf16.evaluate(manifest)["eval_loss"] != pytest.approx(records[-1]["eval_loss"],
                                                                    rel=1e-6)


def test_fp16_step_is_skipped_when_scaled_gradients_overflow():
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = Precision("fp16", torch.device("cpu"))
    before = model.weight.detach().clone()
    scale = precision.scaler.get_scale()
    loss = model(torch.full((1, 3), float("inf"))).sum()
    precision.backward(loss)
    precision.apply(optimizer, model.parameters(), grad_clip=1.0)
    assert torch.equal(model.weight, before)  # no step on inf gradients
    assert precision.scaler.get_scale() < scale  # and the scale backs off
    with precision.autocast():
        assert model(torch.ones(2, 3)).dtype == torch.float16


def test_auto_precision_is_fp32_on_cpu():
    assert Precision("auto", torch.device("cpu")).name == "fp32"
    assert Precision("auto", torch.device("cpu")).scaler is None


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    paths = ensure_builtin(tmp_path_factory.mktemp("data"),
                           BuiltinParams(train_per_class=1, eval_per_class=1, clip_seconds=0.5))
    return load_manifest(paths["train"], paths["labels"])


def test_cache_holds_the_decoded_clips_and_keeps_bad_ones_for_later(manifest, tmp_path):
    from c2f.data.audio import load_waveform

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    clips = [*manifest.clips[:3], Clip(broken, (0,), 99)]
    cache = WaveCache(Manifest(manifest.path, clips, manifest.class_names), 16000, workers=2)
    for i in range(3):
        torch.testing.assert_close(cache.get(i), load_waveform(clips[i].path), rtol=0, atol=0)
    with pytest.raises(DataError, match="broken.wav"):
        cache.get(3)  # raised when the clip is used, as without a cache (skip or fail)


def test_16_bit_clips_are_kept_in_half_the_memory_and_read_back_bit_for_bit(manifest, tmp_path):
    """Mono 16-bit PCM at the run's rate (WAV or FLAC, as `make prepare` writes) is kept as
    int16; a resampled, downmixed or float clip is kept as decoded (float32). Either way the
    cache returns what decoding the file returns, to the bit."""
    from c2f.data.audio import load_waveform

    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((8000, 2)) * 3000).astype(np.int16)
    files = {"mono16.wav": (pcm[:, 0], 16000, "PCM_16", torch.int16),
             "mono16.flac": (pcm[:, 1], 16000, "PCM_16", torch.int16),
             "rate8k.wav": (pcm[:, 0], 8000, "PCM_16", torch.float32),  # resampled to 16 kHz
             "stereo16.wav": (pcm, 16000, "PCM_16", torch.float32),  # the channels' mean
             "float.wav": (pcm[:, 0] / 32768 + 1e-5, 16000, "FLOAT", torch.float32)}
    clips = []
    for i, (name, (data, rate, subtype, _)) in enumerate(files.items()):
        soundfile.write(tmp_path / name, data, rate, subtype=subtype)
        clips.append(Clip(tmp_path / name, (0,), i))
    cache = WaveCache(Manifest(manifest.path, clips, manifest.class_names), 16000)
    for i, (name, (*_, dtype)) in enumerate(files.items()):
        assert cache.stored[i].dtype == dtype, name
        got = cache.get(i)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, load_waveform(tmp_path / name), rtol=0, atol=0)
    sizes = [cache.stored[i].numel() for i in range(len(files))]
    assert wave_bytes(cache) == 2 * sum(sizes[:2]) + 4 * sum(sizes[2:])
    one = Manifest(manifest.path, clips[:1] * 10, manifest.class_names)
    assert estimated_bytes(one, 16000) == 10 * 8000 * 2
    resampled = Manifest(manifest.path, clips[2:3] * 10, manifest.class_names)
    assert estimated_bytes(resampled, 16000) == 10 * 16000 * 4


def test_auto_cache_only_when_the_decoded_audio_fits(manifest, tmp_path, monkeypatch):
    assert should_cache("auto", [manifest], 16000)
    assert not should_cache(False, [manifest], 16000)
    long_clip = tmp_path / "long.wav"
    soundfile.write(long_clip, np.zeros(16000 * 60, np.float32), 16000)  # one minute
    many = Manifest(manifest.path, [Clip(long_clip, (0,), i) for i in range(100_000)],
                    manifest.class_names)  # 100k minutes: 384 GB decoded
    assert not should_cache("auto", [many], 16000)
    assert should_cache(True, [many], 16000)


def test_feature_cache_holds_each_clips_prepared_fbank_whatever_asks_first(manifest):
    """A pool phase's table holds the normalized, pooled fbank (C times fewer frames)."""
    from c2f.compression import BaseInput, create_compression
    from c2f.data.feature_cache import FeatureCache
    from c2f.data.frontend import FeatureSettings, Frontend

    pool = create_compression("pool_avg")
    frontend = Frontend(FeatureSettings(16000, 128, -8.0, 6.0), pool.phase_input(
        BaseInput(10.0, 48, (16, 16), 0), 4), pool, 4, on_device=True)
    waves = WaveCache(manifest, 16000)

    def one_clip(wave: torch.Tensor) -> torch.Tensor:
        view, offset = frontend.clip(wave, None)
        lengths = torch.tensor([frontend.valid_samples(wave)])
        return frontend.fbank(view[None], lengths, torch.tensor([offset]))[0]
    expected = torch.stack([frontend.prepare(one_clip(waves.get(i))) for i in range(len(waves))])
    assert expected.shape[1:] == (12, 128)
    forward, backward = FeatureCache(waves, frontend), FeatureCache(waves, frontend)
    order = torch.arange(len(waves))
    first, second = forward.rows(order[:3]), backward.rows(order.flip(0))
    torch.testing.assert_close(first, expected[:3], atol=1e-5, rtol=0)
    assert torch.equal(backward.table, forward.table)  # built the same way, bitwise
    torch.testing.assert_close(second, expected.flip(0), atol=1e-5, rtol=0)


def test_phases_share_a_feature_table_only_where_their_prepared_fbanks_are_equal():
    """A method that keeps the shape at every C but changes the values (here: a blur in time)
    gets a table per C, so that its last phase trains on the full-resolution fbank; the patch
    methods, whose fbank is the same at every C, share one."""
    from c2f.compression import BaseInput, Compression, PhaseInput, create_compression
    from c2f.data.feature_cache import cache_key
    from c2f.data.frontend import FeatureSettings, Frontend

    class Blur(Compression):
        name = "blur"

        def phase_input(self, base, c):
            return PhaseInput(base.frame_shift_ms, base.target_length, base.target_length,
                              base.patch, base.time_mask)

        def transform(self, fbank, c):
            return fbank.unflatten(-2, (-1, c)).mean(-2, keepdim=True).expand(
                *fbank.shape[:-2], -1, c, -1).flatten(-3, -2)

    base, settings = BaseInput(10.0, 48, (16, 16), 0), FeatureSettings(16000, 128, -8.0, 6.0)

    def key(method: Compression, c: int) -> tuple:
        return cache_key("train", Frontend(settings, method.phase_input(base, c), method, c,
                                           on_device=True))
    blur = Blur()
    assert blur.phase_input(base, 4) == blur.phase_input(base, 1)  # the same shapes
    assert key(blur, 4) != key(blur, 1)
    patch = create_compression("patch_pi")
    assert key(patch, 4) == key(patch, 2) == key(patch, 1)


def test_a_phase_reading_feature_tables_loads_no_waveform(manifest):
    """With feature tables a batch carries clip indices and masks, no waveform to copy, and
    its model input is the one the waveforms give."""
    from c2f.compression import BaseInput, create_compression
    from c2f.data.dataset import collate_skipping
    from c2f.data.frontend import FeatureSettings, Frontend
    from c2f.spec import TrainerSpec
    from c2f.train.distributed import World
    from c2f.train.phase_data import build_phase_data, data_bundle

    settings = FeatureSettings(16000, 128, -8.0, 6.0, freq_mask=24)
    pool = create_compression("pool_max")
    frontend = Frontend(settings, pool.phase_input(BaseInput(10.0, 48, (16, 16), 8), 2), pool,
                        2, on_device=True)
    bundle = data_bundle(manifest, manifest, settings, TrainerSpec(cache_audio=True), False)
    data = build_phase_data(frontend, bundle, seed=3, world=World(), device=torch.device("cpu"),
                            batch_size=4, eval_batch_size=4, num_workers=0, draw=None)
    assert data.features and not data.train_set.waveforms
    data.train_keys.set_epoch(0, 1)
    batch = next(iter(data.train))
    assert batch["size"] == 4 and batch["input"].numel() == 0
    full = collate_skipping([data.train_set.item((0, 1, int(i))) for i in batch["index"]])
    assert full["input"].shape[1] > 0
    torch.testing.assert_close(data.inputs(batch, train=True),
                               data.inputs(full, train=True, cached=False), atol=1e-5, rtol=0)


@pytest.mark.parametrize("key, value", [("trainer.compile", "fastest"),
                                        ("trainer.precision", "fp8"),
                                        ("trainer.eval_precision", "bf16"),
                                        ("trainer.frontend", "gpu"),
                                        ("trainer.cache_features", "sometimes"),
                                        ("trainer.cuda_graphs", "always")])
def test_speed_keys_refuse_unknown_values_naming_the_key(key, value):
    from c2f.spec import ConfigError
    from tests.test_plan import spec_for

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        spec_for(f"{key}={value}")


def test_speed_keys_do_not_change_the_run_id():
    from tests.test_plan import spec_for

    plain = spec_for()
    fast = spec_for("trainer.compile=reduce-overhead", "trainer.precision=bf16",
                    "trainer.eval_precision=train",
                    "trainer.frontend=worker", "trainer.cache_audio=false",
                    "trainer.cache_features=false", "trainer.cuda_graphs=false")
    assert fast.run_id == plain.run_id


def test_auto_precision_is_bf16_from_ampere_and_fp16_before(monkeypatch):
    """torch's is_bf16_supported also counts a V100's or T4's emulated bf16; `auto` looks at
    the compute capability, where bf16 tensor cores start (8: Ampere)."""
    from c2f.train.precision import resolve

    cuda = torch.device("cuda", 0)
    for capability, expected in (((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                 ((9, 0), "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert resolve("auto", cuda) == expected
    assert resolve("auto", torch.device("cpu")) == "fp32"
    assert resolve("fp16", torch.device("cpu")) == "fp16"
