"""Audio files under `--src` that no listed clip uses are counted and named in problems.txt (a
larger download, another subset, or lists that are not the ones meant), while the file of a row
left out is not counted again: its own problems.txt line names it
(`python -m c2f.data.prepare esc50|librispeech`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from c2f.data.prepare.__main__ import main

WAVE = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)


def write(path: Path, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, WAVE, rate)


def prepare(name: str, src: Path, out: Path) -> int:
    return main([name, "--src", str(src), "--out", str(out), "--workers", "1", "--no-progress",
                 "--no-stats"])


def test_esc50_counts_the_files_of_audio_its_list_does_not_name(tmp_path, capsys):
    """Every file of the release's audio/ is listed in meta/esc50.csv: one it does not list is
    counted; the files of rows left out (a fold out of range, a target named two ways) are
    named by those rows' lines alone."""
    src = tmp_path / "ESC-50-master"
    rows = [f"{fold}-100{fold}-A-0.wav,{fold},0,dog,False,100{fold},A" for fold in range(1, 6)]
    rows += ["6-1006-A-0.wav,6,0,dog,False,1006,A",  # fold 6: left out
             "1-1007-A-0.wav,1,0,cat,False,1007,A"]  # target 0 is dog elsewhere: left out
    (src / "meta").mkdir(parents=True)
    (src / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n" + "\n".join(rows) + "\n")
    for row in rows:
        write(src / "audio" / row.split(",")[0], 44100)
    write(src / "audio" / "1-2000-B-3.wav", 44100)  # listed nowhere
    out = tmp_path / "esc50"
    assert prepare("esc50", src, out) == 0
    said = capsys.readouterr().out
    assert "missing 0, failed 0" in said
    problems = (out / "problems.txt").read_text().splitlines()
    assert [line.split(":", 2)[:2] for line in problems[:2]] == [["esc50.csv", "7"],
                                                                  ["esc50.csv", "8"]]
    assert problems[2:] == [
        f"1 audio file(s) under {src / 'audio'} hold no clip of this dataset's lists and are "
        "left out ('1-2000-B-3.wav'): expected when the folder holds more than these lists "
        "(another subset, other classes); else check that the lists read, named in "
        "prepared.json, are the ones meant"]
    assert "1 audio file(s) under" in said  # printed with the list problems


def test_librispeech_counts_the_utterances_no_transcript_lists(tmp_path, capsys):
    """An utterance its chapter's *.trans.txt does not list, and a chapter without one, are
    counted; the file of a transcript line left out for its id is not."""
    src = tmp_path / "LibriSpeech"
    chapter = src / "train-clean-100" / "19" / "198"
    for n in range(4):
        write(chapter / f"19-198-{n:04d}.flac")
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 SOME WORDS\n19-198-0001 MORE WORDS\n"
        "19-198-0002.flac AN ID WITH ITS SUFFIX\n")  # left out, its file named by this line
    write(src / "train-clean-100" / "26" / "496" / "26-496-0000.flac")  # no trans.txt
    out = tmp_path / "librispeech"
    assert prepare("librispeech", tmp_path, out) == 0
    assert "missing 0, failed 0; manifests: train960.json 2" in capsys.readouterr().out
    problems = (out / "problems.txt").read_text().splitlines()
    assert problems[0].startswith("19-198.trans.txt:3: '19-198-0002.flac' is not ")
    assert problems[1:] == [
        f"2 audio file(s) under {src} hold no clip of this dataset's lists and are left out "
        "('train-clean-100/19/198/19-198-0003.flac', 'train-clean-100/26/496/26-496-0000.flac'): "
        "expected when the folder holds more than these lists (another subset, other classes); "
        "else check that the lists read, named in prepared.json, are the ones meant"]


def test_esc50_with_its_list_kept_elsewhere_finds_the_clips_in_src_audio(tmp_path, capsys):
    """`--lists` names an esc50.csv kept outside the release (as the README allows): the clips
    are still found in `--src`/audio, not all reported missing."""
    src = tmp_path / "ESC-50-master"
    rows = [f"{fold}-100{fold}-A-0.wav,{fold},0,dog,False,100{fold},A" for fold in range(1, 6)]
    for row in rows:
        write(src / "audio" / row.split(",")[0], 44100)
    lists = tmp_path / "elsewhere" / "esc50.csv"
    lists.parent.mkdir()
    lists.write_text("filename,fold,target,category,esc10,src_file,take\n" + "\n".join(rows))
    out = tmp_path / "esc50"
    assert main(["esc50", "--src", str(src), "--lists", str(lists), "--out", str(out),
                 "--workers", "1", "--no-progress", "--no-stats"]) == 0
    assert "missing 0, failed 0" in capsys.readouterr().out
