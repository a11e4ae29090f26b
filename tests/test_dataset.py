"""The spectrogram dataset on real rendered audio: phases, determinism, augmentation, mixup."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from c2f import features
from c2f.compression import BaseInput, create_compression
from c2f.data.audio import load_waveform
from c2f.data.builtin import BuiltinParams, ensure_builtin
from c2f.data.dataset import FeatureSettings, SpectrogramDataset, collate_skipping, item_seed
from c2f.data.frontend import Frontend
from c2f.data.manifest import load_manifest
from c2f.data.stats import compute_stats

BASE = BaseInput(frame_shift_ms=10.0, target_length=128, patch=(16, 16), time_mask=24)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    paths = ensure_builtin(tmp_path_factory.mktemp("data"),
                           BuiltinParams(train_per_class=2, eval_per_class=1, clip_seconds=1.28))
    return load_manifest(paths["train"], paths["labels"])


def dataset(manifest, method: str, c: int, train: bool = False, **settings):
    compression = create_compression(method)
    options = {"sample_rate": 16000, "num_mel_bins": 128, "mean": -8.0, "std": 6.0} | settings
    frontend = Frontend(FeatureSettings(**options), compression.phase_input(BASE, c),
                        compression, c, on_device=False)
    return SpectrogramDataset(manifest, frontend, train=train)


def test_fshift_item_is_normalized_kaldi_fbank_at_c_times_the_shift(manifest):
    spec, frames, offset, masks, target, index, silent, noise, roll, partner, lam = dataset(
        manifest, "fshift", 4)[0]
    wave = load_waveform(manifest.clips[0].path)
    expected = features.pad_or_crop_frames(features.fbank(wave, 16000, 128, 40.0), 32)
    torch.testing.assert_close(spec, (expected + 8.0) / 12.0)
    assert target.sum() == 1 and target.shape == (11,)
    assert index == 0 and not silent and frames == 32 and offset == 0 and not masks.any()
    assert noise.numel() == 0 and roll == 0 and partner == 0 and lam == 1.0  # unmixed


def test_pool_item_is_the_pooled_full_resolution_item(manifest):
    full = dataset(manifest, "pool_avg", 1)[3].input
    pooled = dataset(manifest, "pool_avg", 4)[3].input
    assert pooled.shape == (32, 128)
    torch.testing.assert_close(pooled, full.reshape(32, 4, 128).mean(dim=1))


def test_patch_item_keeps_full_resolution(manifest):
    spec = dataset(manifest, "patch_pi", 4)[0].input
    assert spec.shape == (128, 128)


def test_augmentation_is_seeded_per_item_and_epoch(manifest):
    train = dataset(manifest, "fshift", 1, train=True, freq_mask=24)
    first = train[0, 0, 5].input
    torch.testing.assert_close(train[0, 0, 5].input, first)  # same (phase, epoch, index)
    torch.testing.assert_close(train[5].input, first)  # an index alone is phase 0, epoch 0
    assert not torch.equal(first, dataset(manifest, "fshift", 1)[5].input)  # masks applied
    assert not torch.equal(train[0, 1, 5].input, first)  # a new epoch draws new masks
    assert not torch.equal(train[1, 0, 5].input, first)  # and so does a new phase


def test_batches_do_not_depend_on_worker_count(manifest):
    train = dataset(manifest, "pool_max", 2, train=True, freq_mask=24, mixup=0.5)

    def batches(workers: int):
        loader = DataLoader(train, batch_size=5, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(3),
                            collate_fn=collate_skipping)
        return [b["input"] for b in loader]

    for a, b in zip(batches(0), batches(2)):
        torch.testing.assert_close(a, b)


def test_mixup_mixes_labels_with_weights_that_sum_to_one(manifest):
    mixed = dataset(manifest, "fshift", 1, train=True, mixup=1.0)
    targets = torch.stack([mixed[i].target for i in range(len(mixed))])
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(len(mixed)))
    assert (targets > 0).sum(dim=1).max() == 2  # at least one clip got another class mixed in


@pytest.mark.parametrize("method, c, max_roll", [("fshift", 1, 10), ("fshift", 4, 2),
                                                 ("pool_avg", 2, 5), ("patch_pi", 4, 10)])
def test_noise_is_asts_uniform_noise_and_roll_over_100_ms(manifest, method, c, max_roll):
    """AST's --noise: + rand(frames, mel) * U(0, 1) / 10 after normalization, then a roll by
    randint(-10, 10) frames of 10 ms; coarse frames roll by the same 100 ms. Training only."""
    noisy = dataset(manifest, method, c, train=True, noise=True)
    plain = dataset(manifest, method, c, train=True)
    assert noisy.frontend.max_roll == max_roll
    rolls = set()
    for epoch in range(12):
        item, clean = noisy[0, epoch, 1], plain[0, epoch, 1]
        draws = torch.Generator().manual_seed(item_seed(0, 0, epoch, 1))
        noisy.frontend.draw_masks(draws)  # the masks come first, as in AST
        field = torch.rand(clean.input.shape, generator=draws)
        field = field * (float(torch.rand((), generator=draws)) / 10)
        roll = int(torch.randint(-max_roll, max_roll, (), generator=draws))
        torch.testing.assert_close(item.input, torch.roll(clean.input + field, roll, 0))
        assert item.roll == roll and float(item.noise.max()) <= 0.1
        rolls.add(roll)
    assert min(rolls) < 0 < max(rolls) and max(rolls) < max_roll
    evaluation = dataset(manifest, method, c, noise=True)[1]
    assert torch.equal(evaluation.input, dataset(manifest, method, c)[1].input)


def ast_mix(first: torch.Tensor, second: torch.Tensor, lam: float) -> torch.Tensor:
    """AST's src/dataloader.py `_wav2fbank` with a second file, step by step."""
    first, second = first - first.mean(), second - second.mean()
    if first.shape[1] != second.shape[1]:
        if first.shape[1] > second.shape[1]:
            padded = torch.zeros(1, first.shape[1])
            padded[0, 0:second.shape[1]] = second
            second = padded
        else:
            second = second[0, 0:first.shape[1]]
    mixed = lam * first + (1 - lam) * second
    return mixed - mixed.mean()


@pytest.mark.parametrize("first_seconds, second_seconds", [(1.0, 0.4), (0.4, 1.0)])
def test_mixup_of_clips_of_different_lengths_is_asts(tmp_path, first_seconds, second_seconds):
    """Each clip loses its own mean before the other is padded or cut (the padding stays
    zero), and the item is kaldi's fbank of AST's mixed waveform."""
    import soundfile

    from tests.test_manifest import write_csv, write_manifest

    gen = torch.Generator().manual_seed(0)
    waves = [torch.rand(1, int(s * 16000), generator=gen) * 0.5 + 0.2 * (i + 1)  # DC offsets
             for i, s in enumerate((first_seconds, second_seconds))]
    for i, wave in enumerate(waves):
        soundfile.write(tmp_path / f"{i}.wav", wave[0].numpy(), 16000, subtype="FLOAT")
    path = write_manifest(tmp_path, {"data": [
        {"wav": str(tmp_path / f"{i}.wav"), "labels": label}
        for i, label in enumerate(("/m/dog", "/m/cat"))]})
    m = load_manifest(path, write_csv(tmp_path))
    train = dataset(m, "fshift", 1, train=True, mixup=1.0)
    checked = 0
    for epoch in range(6):
        draws = torch.Generator().manual_seed(item_seed(0, 0, epoch, 0))
        assert float(torch.rand((), generator=draws)) < 1.0
        if int(torch.randint(0, 2, (), generator=draws)) != 1:
            continue  # mixed with itself: nothing to pad
        checked += 1
        lam = features.mixup_weight(draws)
        item = train[0, epoch, 0]
        expected_wave = ast_mix(waves[0], waves[1], lam)
        expected = features.pad_or_crop_frames(features.fbank(expected_wave, 16000, 128, 10.0),
                                               128)
        expected = features.apply_masks((expected + 8.0) / 12.0, item.masks, 8.0 / 12.0)
        torch.testing.assert_close(item.input, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(item.target, torch.tensor([lam, 1 - lam, 0.0]))
    assert checked >= 2


def test_stats_match_the_features_they_describe(manifest):
    mean, std = compute_stats(manifest, target_length=128)
    specs = torch.stack([dataset(manifest, "fshift", 1, mean=0.0, std=0.5)[i].input
                         for i in range(len(manifest.clips))])
    assert mean == pytest.approx(float(specs.mean()), rel=1e-4)
    assert std == pytest.approx(float(specs.double().std(unbiased=False)), rel=1e-4)


def test_a_cut_stats_cache_file_is_named_and_computed_again(manifest, tmp_path):
    """The cache is shared by every run of the dataset: one torn file must not stop them."""
    from c2f.data.stats import cached_stats

    said = []
    mean, std = cached_stats(tmp_path, manifest, target_length=128, log=said.append)
    [cache] = tmp_path.glob("stats-*.json")
    cache.write_text('{"mean": -7.98')
    assert cached_stats(tmp_path, manifest, target_length=128, log=said.append) == (mean, std)
    assert any(line.startswith(f"warning: {cache} is unreadable") for line in said)
    assert json.loads(cache.read_text())["mean"] == mean  # written whole again


def test_a_cut_stats_file_beside_the_manifest_is_rewritten_not_warned_about_forever(
        manifest, tmp_path, monkeypatch):
    """Review 6 F5: it said "computed again" on every run while the cache_dir copy was used,
    and stayed cut."""
    from c2f.data import stats

    computed = []
    monkeypatch.setattr(stats, "compute_stats", lambda *a, **k: computed.append(1) or (-7.0, 5.0))
    beside = manifest.path.parent / stats.STATS_DIR
    beside.mkdir(exist_ok=True)
    said = []
    assert stats.cached_stats(tmp_path, manifest, target_length=96, log=said.append) == (-7.0, 5.0)
    [cache] = tmp_path.glob("stats-*.json")
    (beside / cache.name).write_text('{"mean": -7.0')
    try:
        for _ in range(2):
            assert stats.cached_stats(tmp_path, manifest, target_length=96, log=said.append) \
                == (-7.0, 5.0)
        assert len(computed) == 1 and said == [
            f"warning: {beside / cache.name} is unreadable (JSONDecodeError: Expecting ',' "
            f"delimiter: line 1 column 14 (char 13)); using {cache}",
            f"note: {beside / cache.name} rewritten with the statistics in {cache}"]
        assert (beside / cache.name).read_text() == cache.read_text()
    finally:
        (beside / cache.name).unlink()


def test_stats_of_unusual_clips_match_their_features(tmp_path):
    """A clip shorter than one fbank window, an 8 kHz stereo one, silence and a long one: the
    statistics describe what training sees (no clip is refused)."""
    rng = np.random.default_rng(3)
    clips = {"5ms.wav": (rng.normal(0, 0.1, 80), 16000),
             "8k_stereo.wav": (rng.normal(0, 0.1, (16000, 2)), 8000),
             "silence.wav": (np.zeros(16000), 16000),
             "long.wav": (rng.normal(0, 0.1, 16000 * 30), 16000)}
    for name, (samples, rate) in clips.items():
        soundfile.write(tmp_path / name, samples.astype(np.float32), rate)
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/a,a\n")
    (tmp_path / "m.json").write_text(json.dumps(
        {"data": [{"wav": name, "labels": "/m/a"} for name in clips]}))
    odd = load_manifest(tmp_path / "m.json", tmp_path / "labels.csv")
    mean, std = compute_stats(odd, target_length=128)
    specs = torch.stack([dataset(odd, "fshift", 1, mean=0.0, std=0.5)[i].input
                         for i in range(len(clips))])
    assert mean == pytest.approx(float(specs.mean()), rel=1e-4)
    assert std == pytest.approx(float(specs.double().std(unbiased=False)), rel=1e-4)


def test_stats_command_prints_ready_to_paste_overrides(manifest):
    from tests.conftest import ROOT, cli_env
    from tests.warm_python import run_python

    labels = manifest.path.parent / "class_labels_indices.csv"
    proc = run_python(["-m", "c2f.data.stats", "--manifest", str(manifest.path), "--labels",
                       str(labels), "--target-length", "128"], ROOT, cli_env())
    assert proc.returncode == 0, proc.stderr
    mean, std = compute_stats(manifest, target_length=128)
    assert proc.stdout.strip() == \
        f"dataset.norm_mean={mean:.7f} dataset.norm_std={std:.7f} dataset.target_length=128"


def test_stats_say_which_clips_they_left_out(manifest, tmp_path, capsys):
    """An unreadable clip is left out of the statistics, and said: how many, and the first."""
    from c2f.data.stats import main

    labels = manifest.path.parent / "class_labels_indices.csv"
    entries = json.loads(manifest.path.read_text())["data"][:3]
    for entry in entries:
        entry["wav"] = str(manifest.path.parent / entry["wav"])
    (tmp_path / "junk.wav").write_bytes(b"RIFF, but not really")
    bad = [*entries, {"wav": str(tmp_path / "junk.wav"), "labels": entries[0]["labels"]}]
    for name, data in (("good.json", entries), ("bad.json", bad)):
        (tmp_path / name).write_text(json.dumps({"data": data}))
    args = ["--labels", str(labels), "--target-length", "128"]
    assert main(["--manifest", str(tmp_path / "good.json"), *args]) == 0
    good = capsys.readouterr()
    assert main(["--manifest", str(tmp_path / "bad.json"), *args]) == 0
    said = capsys.readouterr()
    assert said.out == good.out and good.out.endswith(" dataset.target_length=128\n")
    assert good.err == "statistics of 3 sampled clip(s) at 128 frames (--target-length); " \
        "train with the same dataset.target_length\n"
    assert said.err.startswith(f"WARNING: statistics of {tmp_path / 'bad.json'} leave out 1 "
                               f"unreadable clip(s) of the 4 sampled; the first: ")
    assert "junk.wav" in said.err
    # the statistics count the padding: a prepared folder's manifest gets its prepared length
    (tmp_path / "prepared.json").write_text(json.dumps({"target_length": 256}))
    assert main(["--manifest", str(tmp_path / "good.json"), "--labels", str(labels)]) == 0
    prepared = capsys.readouterr()
    assert prepared.out.endswith(" dataset.target_length=256\n") and prepared.out != good.out
    assert f"at 256 frames (prepared.json in {tmp_path})" in prepared.err
    assert main(["--manifest", str(tmp_path / "missing.json"), *args]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_masked_cells_hold_the_normalized_zero_as_in_ast(manifest):
    """AST masks the raw fbank, then normalizes: a masked cell is (0 - mean) / (2 std)."""
    mean, std = -8.0, 6.0
    plain = dataset(manifest, "fshift", 1, mean=mean, std=std)[2].input
    masked = dataset(manifest, "fshift", 1, train=True, freq_mask=60, mean=mean, std=std)[
        0, 0, 2].input
    changed = masked != plain
    assert changed.any()
    torch.testing.assert_close(masked[changed], torch.full_like(masked[changed], 8.0 / 12.0))


@pytest.mark.parametrize("seed", range(4))
def test_masks_are_drawn_as_torchaudio_draws_them(seed):
    """draw_masks + apply_masks == torchaudio's FrequencyMasking then TimeMasking."""
    import torchaudio

    spec = torch.arange(60.0 * 40).reshape(60, 40)  # [frames, mel]
    masks = features.draw_masks(torch.Generator().manual_seed(seed), 12, 30, mel=40, frames=60)
    torch.manual_seed(seed)
    image = torchaudio.transforms.FrequencyMasking(12)(spec.T.unsqueeze(0), -1.5)
    expected = torchaudio.transforms.TimeMasking(30)(image, -1.5).squeeze(0).T
    torch.testing.assert_close(features.apply_masks(spec, masks, -1.5), expected)
    assert masks[1] - masks[0] < 12 and masks[3] - masks[2] < 30


def test_batched_masks_are_each_items_own():
    spec = torch.zeros(3, 8, 6)
    masks = torch.tensor([[0, 2, 0, 0], [0, 0, 5, 8], [1, 1, 2, 3]])
    out = features.apply_masks(spec, masks, 1.0)
    assert out[0, :, :2].eq(1).all() and out[0, :, 2:].eq(0).all()  # two frequency bins
    assert out[1, 5:].eq(1).all() and out[1, :5].eq(0).all()  # three frames
    assert out[2, 2].eq(1).all() and out[2].sum() == 6  # one frame, an empty frequency band


def test_silent_clip_is_valid_audio_and_flagged(tmp_path, manifest):
    import numpy as np
    import soundfile

    from c2f.data.manifest import Clip

    silent_wav = tmp_path / "silence.wav"
    soundfile.write(silent_wav, np.zeros(16000), 16000)
    clips = [Clip(silent_wav, (0,), 0), *manifest.clips[:2]]
    with_silence = type(manifest)(manifest.path, clips, manifest.class_names)
    item = dataset(with_silence, "fshift", 2, train=True, freq_mask=8)[0, 0, 0]
    assert item.silent and torch.isfinite(item.input).all()
    assert not dataset(with_silence, "fshift", 2)[1].silent
