"""Waveform decoding: downmix, resampling, padding, silence, and refusal of bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from c2f.data import DataError, load_waveform, pad_or_crop


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    """A 0.5-amplitude sine."""
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_is_downmixed_to_mean(tmp_path: Path) -> None:
    left = tone(16000, 0.25)
    right = np.full_like(left, 0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wave = load_waveform(path)
    assert wave.shape == (1, 4000)
    assert wave.dtype == torch.float32
    torch.testing.assert_close(wave[0], torch.from_numpy((left + right) / 2))


@pytest.mark.parametrize(("rate", "seconds"), [(44100, 1.0), (8000, 0.5), (22050, 0.3)])
def test_resampling_gives_target_length_and_pitch(
    tmp_path: Path, rate: int, seconds: float
) -> None:
    path = tmp_path / f"r{rate}.flac"
    soundfile.write(path, tone(rate, seconds, freq=1000.0), rate)
    wave = load_waveform(path, sample_rate=16000)
    assert wave.shape == (1, round(16000 * seconds))
    spectrum = np.abs(np.fft.rfft(wave[0].numpy()))
    peak_hz = np.argmax(spectrum) * 16000 / wave.shape[1]
    assert abs(peak_hz - 1000.0) < 5


def test_same_rate_is_untouched(tmp_path: Path) -> None:
    x = tone(16000, 0.1)
    soundfile.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    assert np.array_equal(load_waveform(tmp_path / "a.wav")[0].numpy(), x)


def test_pad_or_crop() -> None:
    wave = torch.arange(1, 6, dtype=torch.float32).unsqueeze(0)
    assert pad_or_crop(wave, 3).tolist() == [[1, 2, 3]]
    assert pad_or_crop(wave, 7).tolist() == [[1, 2, 3, 4, 5, 0, 0]]
    assert pad_or_crop(wave, 5).tolist() == wave.tolist()


def write_truncated(path: Path, subtype: str) -> Path:
    """Write one second of audio, then cut the file to half its bytes."""
    soundfile.write(path, tone(16000, 1.0), 16000, subtype=subtype)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_nan(path: Path) -> Path:
    """A float WAV with one NaN sample."""
    x = tone(16000, 0.1)
    x[100] = np.nan
    soundfile.write(path, x, 16000, subtype="FLOAT")
    return path


def write_inf(path: Path) -> Path:
    """A float WAV with one +Inf sample."""
    x = tone(16000, 0.1)
    x[5] = np.inf
    soundfile.write(path, x, 16000, subtype="FLOAT")
    return path


def write_silent(path: Path) -> Path:
    """A WAV of digital silence."""
    soundfile.write(path, np.zeros(1600), 16000)
    return path


def write_empty(path: Path) -> Path:
    """A valid WAV with zero frames."""
    soundfile.write(path, np.zeros(0), 16000)
    return path


def write_corrupt(path: Path) -> Path:
    """Random bytes with a .wav name."""
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    return path


BAD_FILES = {
    "missing": (lambda p: p, "not found"),
    "corrupt": (write_corrupt, "cannot decode"),
    "truncated_pcm16": (lambda p: write_truncated(p, "PCM_16"), "truncated"),
    "truncated_float": (lambda p: write_truncated(p, "FLOAT"), "truncated"),
    "empty": (write_empty, "zero-length"),
    "zero_bytes": (lambda p: (p.write_bytes(b""), p)[1], "empty file (0 bytes)"),
    "nan": (write_nan, "NaN"),
    "inf": (write_inf, "Inf"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_naming_path(tmp_path: Path, case: str) -> None:
    make, needle = BAD_FILES[case]
    path = make(tmp_path / f"{case}.wav")
    with pytest.raises(DataError) as err:
        load_waveform(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_containers_libsndfile_cannot_open_decode_through_pyav(tmp_path: Path) -> None:
    """A QuickTime file of 16-bit PCM (as m4a, mp4, webm: no libsndfile format) decodes to the
    same samples as the WAV, and passes the manifest's header check; a video without sound is
    refused there, naming why."""
    import av

    from c2f.data.manifest import check_files, load_manifest
    from tests.dataset_layouts import write_media

    pcm = np.round(tone(22050, 0.5) * 32768).astype(np.int16)  # exact in both writers
    soundfile.write(tmp_path / "a.wav", pcm, 22050, subtype="PCM_16")
    write_media(tmp_path / "a.mov", pcm / np.float32(32768), 22050)
    torch.testing.assert_close(load_waveform(tmp_path / "a.mov"),
                               load_waveform(tmp_path / "a.wav"), atol=0, rtol=0)
    with av.open(str(tmp_path / "mute.mkv"), "w", format="matroska") as container:
        video = container.add_stream("mpeg4", rate=5)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        for frame in [av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), "rgb24")] * 3:
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/a,a\n")
    (tmp_path / "m.json").write_text('{"data": [{"wav": "a.mov", "labels": "/m/a"}, '
                                     '{"wav": "mute.mkv", "labels": "/m/a"}]}')
    manifest = load_manifest(tmp_path / "m.json", tmp_path / "labels.csv")
    kept, bad = check_files(manifest, "skip")
    assert [c.path.name for c in kept.clips] == ["a.mov"]
    assert len(bad) == 1 and "mute.mkv" in bad[0] and "no audio stream" in bad[0]
    with pytest.raises(DataError, match="mute.mkv: cannot decode audio .*no audio stream"):
        load_waveform(tmp_path / "mute.mkv")


def test_a_folder_walk_follows_links_once(tmp_path: Path) -> None:
    """A link to a folder is followed; a link back up (a cycle) is not walked forever."""
    from c2f.data.audio import audio_files

    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for path in (tmp_path / "a" / "x.wav", tmp_path / "elsewhere" / "y.flac"):
        soundfile.write(path, tone(16000, 0.1), 16000)
    (tmp_path / "a" / "deep" / "up").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "other").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "a" / "notes.txt").write_text("not audio")
    found = audio_files(tmp_path / "a")
    assert [p.relative_to(tmp_path / "a").as_posix() for p in found] == ["x.wav", "other/y.flac"]


def test_truncated_flac_raises(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    noise = 0.01 * np.random.default_rng(0).standard_normal(16000)
    soundfile.write(path, tone(16000, 1.0) + noise, 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.flac"):
        load_waveform(path)


def test_silence_is_valid_audio(tmp_path: Path) -> None:
    """AudioSet holds all-silent clips: they load (and are counted by the trainer)."""
    from c2f.data.audio import is_silent

    wave = load_waveform(write_silent(tmp_path / "silent.wav"))
    assert wave.shape == (1, 1600) and is_silent(wave)
    soundfile.write(tmp_path / "tone.wav", tone(16000, 0.1), 16000)
    assert not is_silent(load_waveform(tmp_path / "tone.wav"))


def test_quiet_but_not_silent_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    soundfile.write(path, tone(16000, 0.1) * 1e-4, 16000, subtype="FLOAT")
    assert load_waveform(path).abs().max() > 1e-6
