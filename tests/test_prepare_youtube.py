"""Sources of the YouTube datasets as users download them: a clip named by bare id that holds
the segment already cut (PANNs' `Y<id>.wav`) or the whole video, and names c2f cannot read
(yt-dlp's default `Title [id].ext`); `python -m c2f.data.prepare audioset`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from c2f.data.prepare.__main__ import main
from tests.dataset_layouts import youtube_id

RATE = 32000  # PANNs' downloader writes 32 kHz mono WAV (utils/dataset.py: -ac 1 -ar 32000)


def stepped(seconds: int, rate: int = RATE) -> np.ndarray:
    """A tone of 200 + 100 s Hz in second s: where a cut was made can be read off the output."""
    t = np.arange(rate) / rate
    return np.concatenate([0.3 * np.sin(2 * np.pi * (200 + 100 * s) * t)
                           for s in range(seconds)]).astype(np.float32)


def hz(wave: np.ndarray, second: int, rate: int = 16000) -> float:
    """The strongest frequency in one second of a clip."""
    spectrum = np.abs(np.fft.rfft(wave[second * rate:(second + 1) * rate]))
    return float(np.argmax(spectrum)) * rate / (2 * (spectrum.size - 1))


def audioset_src(root: Path, segments: list[tuple[str, float]]) -> Path:
    """AudioSet's lists for `segments` (id, start), all in the balanced list."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/05r5c,Piano\n")
    head = "# Segments csv\n# num_ytids=1\n# YTID, start_seconds, end_seconds, positive_labels\n"
    rows = [f'{ident}, {start:.3f}, {start + 10:.3f}, "/m/05r5c"' for ident, start in segments]
    (root / "balanced_train_segments.csv").write_text(head + "\n".join(rows) + "\n")
    (root / "eval_segments.csv").write_text(  # eval: one clip without a file
        head + f'{youtube_id(99)}, 0.000, 10.000, "/m/05r5c"\n')
    return root


def prepare(src: Path, out: Path, *extra: str) -> int:
    return main(["audioset", "--src", str(src), "--out", str(out / "audioset"), "--workers", "1",
                 "--no-progress", "--no-stats", *extra])


def test_a_bare_id_file_is_read_as_cut_or_whole_by_its_length(tmp_path, capsys):
    """PANNs' `Y<id>.wav` holds the 10 s segment already cut: listed at 4 s it is taken from
    its start (not cut again at 4 s); a whole 40 s `<id>.flac` is cut at its start (30 s); a
    12 s file listed at 30 s fits neither reading and says what to pass; --bare-id-files forces
    a reading, and a file that does not fit the forced one says so with the fix."""
    cut, whole, odd = youtube_id(1), youtube_id(2), youtube_id(3)
    src = audioset_src(tmp_path / "src", [(cut, 4.0), (whole, 30.0), (odd, 30.0)])
    soundfile.write(src / f"Y{cut}.wav", stepped(10), RATE)
    soundfile.write(src / f"{whole}.flac", stepped(40, 16000), 16000)
    soundfile.write(src / f"{odd}.wav", stepped(12), RATE)
    out = tmp_path / "data"
    assert prepare(src, out) == 0
    said = capsys.readouterr().out
    audio = out / "audioset" / "audio"
    wave, _ = soundfile.read(audio / f"{cut}_4000.flac")
    assert [round(hz(wave, s)) for s in (0, 9)] == [200, 1100]  # the source's seconds 0 and 9
    wave, _ = soundfile.read(audio / f"{whole}_30000.flac")
    assert [round(hz(wave, s)) for s in (0, 9)] == [3200, 4100]  # seconds 30 and 39
    assert "1 read as the segment already cut (no longer than it), 1 as whole videos" in said
    failed = (out / "audioset" / "failed.txt").read_text()
    assert f"{odd}.wav\tnamed by bare id and 12.00 s long, longer than the 10 s segment" in failed
    assert "pass --bare-id-files segment" in failed
    assert prepare(src, out, "--bare-id-files", "segment") == 0  # the 12 s file's first 10 s
    wave, _ = soundfile.read(audio / f"{odd}_30000.flac")
    assert [round(hz(wave, s)) for s in (0, 9)] == [200, 1100]
    capsys.readouterr()
    again = tmp_path / "again"
    assert prepare(src, again, "--bare-id-files", "video") == 0  # the old reading, forced
    wave, _ = soundfile.read(again / "audioset" / "audio" / f"{cut}_4000.flac")
    assert round(hz(wave, 0)) == 600 and np.abs(wave[-16000:]).max() == 0
    failed = (again / "audioset" / "failed.txt").read_text()
    assert f"Y{cut}.wav" not in failed
    assert f"{odd}.wav\tthe file holds 12.00 s of audio, the segment starts at 30.00 s; read " \
        "as the whole video (--bare-id-files video): if it is the segment already cut, pass " \
        "--bare-id-files auto" in failed


def test_names_of_yt_dlp_are_read_and_other_names_are_counted(tmp_path, capsys):
    """yt-dlp's default output template, `<title> [<id>].<ext>`, names a clip by its id (read
    by its length as any bare id); audio files whose names hold no id are counted and named
    in problems.txt with the names that are read, not dropped without a word, and so are
    files whose ids no list names (a larger download, or a list that is not the one meant)."""
    cut, whole, unlisted = youtube_id(4), youtube_id(5), youtube_id(6)
    src = audioset_src(tmp_path / "src", [(cut, 4.0), (whole, 30.0)])
    soundfile.write(src / f"Cat video [{cut}].wav", stepped(10), RATE)
    soundfile.write(src / f"{unlisted}_30.000_40.000.wav", stepped(10), RATE)
    soundfile.write(src / f"{whole}_90.000_100.000.wav", stepped(10), RATE)  # another segment
    soundfile.write(src / f"A [b] c - live! [{whole}].flac", stepped(40, 16000), 16000)
    (src / "other").mkdir()
    for name in ("my download.wav", "take 2.wav", "x.wav", "y.wav"):
        soundfile.write(src / "other" / name, stepped(1), RATE)
    out = tmp_path / "data"
    assert prepare(src, out) == 0
    said = capsys.readouterr().out
    assert "missing 1, failed 0; manifests: balanced_train.json 2" in said  # eval's clip
    audio = out / "audioset" / "audio"
    wave, _ = soundfile.read(audio / f"{cut}_4000.flac")
    assert round(hz(wave, 0)) == 200
    wave, _ = soundfile.read(audio / f"{whole}_30000.flac")
    assert round(hz(wave, 0)) == 3200
    problems = (out / "audioset" / "problems.txt").read_text()
    assert f"4 audio file(s) under {src} are left out: their names hold no YouTube id " \
        "('other/my download.wav', 'other/take 2.wav', 'other/x.wav' and 1 more); name them " \
        "<id>.<ext>, Y<id>.<ext>, <id>_<start>_<end>.<ext>" in problems
    assert "4 audio file(s) under" in said  # printed with the list problems
    shown = ", ".join(sorted(f"'{name}'" for name in (f"{unlisted}_30.000_40.000.wav",
                                                      f"{whole}_90.000_100.000.wav")))
    assert f"2 audio file(s) under {src} hold no clip of this dataset's lists and are left out " \
        f"({shown}): expected when the folder holds more than these lists" in problems


def test_a_clip_listed_for_training_and_for_evaluation_is_kept_for_evaluation(tmp_path,
                                                                              capsys):
    """A hand-edited list that names one clip in the balanced training list and in the eval
    list: the clip is scored, never trained on (a leak would inflate the eval metric), and
    the report says so."""
    import json

    shared, own = youtube_id(1), youtube_id(2)
    src = audioset_src(tmp_path / "src", [(shared, 0.0), (own, 0.0)])
    head = "# Segments csv\n# num_ytids=1\n# YTID, start_seconds, end_seconds, positive_labels\n"
    (src / "eval_segments.csv").write_text(head + f'{shared}, 0.000, 10.000, "/m/05r5c"\n')
    for ident in (shared, own):
        soundfile.write(src / f"Y{ident}.wav", stepped(10), RATE)
    out = tmp_path / "data"
    assert prepare(src, out) == 0
    folder = out / "audioset"
    listed = {name: [clip["wav"] for clip in json.loads((folder / f"{name}.json").read_text())
                     ["data"]] for name in ("balanced_train", "eval")}
    assert [Path(w).stem for w in listed["eval"]] == [f"{shared}_0"]
    assert [Path(w).stem for w in listed["balanced_train"]] == [f"{own}_0"]
    problems = (folder / "problems.txt").read_text()
    assert f"{shared} 0.000 is listed for training (balanced_train_segments.csv:4) and for " \
        "evaluation (eval_segments.csv:4); kept for evaluation alone" in problems


def test_a_vggsound_row_left_out_for_its_label_is_not_counted_as_an_unlisted_file(tmp_path):
    """Review 6 F6: its file was named twice, the second time as holding no listed clip."""
    src = tmp_path / "src"
    src.mkdir()
    dog, cat = youtube_id(1), youtube_id(2)
    (src / "vggsound.csv").write_text(f"{dog},10,dog barking,train\n{cat},10,cat meowing,train\n"
                                      f"{dog},20,dog barking,test\n")
    for name in (f"{dog}_000010", f"{cat}_000010", f"{dog}_000020", f"{youtube_id(3)}_000010"):
        soundfile.write(src / f"{name}.wav", stepped(10), RATE)
    (tmp_path / "classes.txt").write_text("dog barking\n")
    assert main(["vggsound", "--src", str(src), "--out", str(tmp_path / "vggsound"), "--workers",
                 "1", "--no-progress", "--no-stats", "--classes",
                 str(tmp_path / "classes.txt")]) == 0
    problems = (tmp_path / "vggsound" / "problems.txt").read_text()
    assert f"vggsound.csv:2: {cat}: unknown label 'cat meowing' not in" in problems
    assert f"1 audio file(s) under {src} hold no clip of this dataset's lists and are left " \
        f"out ('{youtube_id(3)}_000010.wav')" in problems


def test_a_kinetics_row_left_out_for_its_times_is_not_counted_as_an_unlisted_file(tmp_path):
    """A row whose start or end is no finite number is named once, by its line: its file is
    not counted again as holding no listed clip (a start that reads finds it by its time, one
    that does not claims the files of its id), while a file no row names still is."""
    src, lists = tmp_path / "src", tmp_path / "lists"
    good, no_start, no_end, endless, kept = (youtube_id(n) for n in range(1, 6))
    rows = {"train.csv": [f"{good},10,20", f"{no_start},ten,30", f"{no_end},40,"],
            "validate.csv": [f"{endless},0,inf", f"{kept},0,10"]}
    lists.mkdir()
    for name, lines in rows.items():
        (lists / name).write_text("label,youtube_id,time_start,time_end\n"
                                  + "".join(f"playing piano,{line}\n" for line in lines))
    src.mkdir()
    for name in (f"{good}_000010_000020", f"{no_start}_000020_000030", f"{no_end}_000040_000050",
                 f"{endless}_000000_000010", f"{kept}_000000_000010",
                 f"{youtube_id(6)}_000000_000010"):
        soundfile.write(src / f"{name}.wav", stepped(10), RATE)
    (tmp_path / "classes.txt").write_text("playing piano\n")
    out = tmp_path / "kinetics_sounds"
    assert main(["kinetics_sounds", "--src", str(src), "--out", str(out), "--workers", "1",
                 "--no-progress", "--no-stats", "--classes", str(tmp_path / "classes.txt"),
                 "--lists", str(lists / "train.csv"), str(lists / "validate.csv")]) == 0
    assert (out / "problems.txt").read_text().splitlines() == [
        f"train.csv:3: {no_start}: time_start 'ten' is not a number; clip left out",
        f"train.csv:4: {no_end}: time_end is empty; clip left out",
        f"validate.csv:2: {endless}: time_end 'inf' is not a finite number; clip left out",
        f"1 audio file(s) under {src} hold no clip of this dataset's lists and are left out "
        f"('{youtube_id(6)}_000000_000010.wav'): expected when the folder holds more than these "
        "lists (another subset, other classes); else check that the lists read, named in "
        "prepared.json, are the ones meant"]


def test_audioset_and_vggsound_rows_left_out_for_their_times_claim_their_files(tmp_path):
    """As Kinetics-Sounds' (above): a row whose times do not read is named by its line alone,
    not again as a file holding no listed clip; AudioSet's infinite start is such a row, not
    an OverflowError."""
    ids = [youtube_id(n) for n in range(1, 6)]
    src = audioset_src(tmp_path / "audioset", [(ids[0], 0.0)])
    head = "# Segments csv\n# num_ytids=1\n# YTID, start_seconds, end_seconds, positive_labels\n"
    (src / "eval_segments.csv").write_text(head + f'{ids[1]}, 30.000, 40.000, "/m/05r5c"\n'
                                           f'{ids[2]}, 30.000, ten, "/m/05r5c"\n'
                                           f'{ids[3]}, inf, 10.000, "/m/05r5c"\n')
    for name in (f"Y{ids[0]}", f"{ids[1]}_30.000_40.000", f"{ids[2]}_30.000_40.000",
                 f"{ids[3]}_0.000_10.000", f"{ids[4]}_0.000_10.000"):
        soundfile.write(src / f"{name}.wav", stepped(10), RATE)
    assert prepare(src, tmp_path / "data") == 0
    problems = (tmp_path / "data" / "audioset" / "problems.txt").read_text()
    assert f"eval_segments.csv:5: {ids[2]}: end_seconds 'ten' is not a number; clip left " \
        "out" in problems
    assert f"eval_segments.csv:6: {ids[3]}: start_seconds 'inf' is not a finite number" in problems
    assert f"1 audio file(s) under {src} hold no clip of this dataset's lists and are left " \
        f"out ('{ids[4]}_0.000_10.000.wav')" in problems
    src = tmp_path / "vggsound"
    src.mkdir()
    (src / "vggsound.csv").write_text(f"{ids[0]},10,dog barking,train\n"
                                      f"{ids[1]},10,dog barking,test\n"
                                      f"{ids[2]},20,dog barking,validation\n"
                                      f"{ids[3]},2.5,dog barking,train\n")
    for name in (f"{ids[0]}_000010", f"{ids[1]}_000010", f"{ids[2]}_000020",
                 f"{ids[3]}_000002", f"{ids[4]}_000010"):
        soundfile.write(src / f"{name}.wav", stepped(10), RATE)
    assert main(["vggsound", "--src", str(src), "--out", str(tmp_path / "data" / "vggsound"),
                 "--workers", "1", "--no-progress", "--no-stats"]) == 0
    problems = (tmp_path / "data" / "vggsound" / "problems.txt").read_text()
    assert f"vggsound.csv:3: {ids[2]}: split 'validation' must be train or test" in problems
    assert f"vggsound.csv:4: {ids[3]}: start '2.5' is not whole seconds; row left out" \
        in problems
    assert f"1 audio file(s) under {src} hold no clip of this dataset's lists and are left " \
        f"out ('{ids[4]}_000010.wav')" in problems


def test_a_segment_is_found_by_its_start_in_seconds_before_milliseconds(tmp_path):
    """Cut segments of one video: the row at 0 s, whose file is not there, is not given
    `_20.000_30.000` read as 20 ms; the one at 20 s is; a name in whole milliseconds
    (`_30000`) is found as 30 s."""
    from c2f.data.prepare.sources import YouTubeIndex

    ident = "abcdefghijk"
    for stem in (f"{ident}_20.000_30.000", f"{ident}_40.000_50.000", f"{'b' * 11}_30000"):
        (tmp_path / f"{stem}.wav").write_bytes(b"")
    index = YouTubeIndex(tmp_path)
    assert index.find(ident, 0.0) is None
    assert index.find(ident, 20.0).path.name == f"{ident}_20.000_30.000.wav"
    (tmp_path / f"{ident}_40.000_50.000.wav").unlink()  # the id's only file: not at 0 s either
    assert YouTubeIndex(tmp_path).find(ident, 0.0) is None
    assert index.find("b" * 11, 30.0).path.name == f"{'b' * 11}_30000.wav"
