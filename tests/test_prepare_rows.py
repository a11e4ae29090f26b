"""Bad rows of the publishers' lists (cut short, a cell left blank, a number that is none or
places no segment) become problems.txt lines naming the list, the line and what is wrong,
never a traceback, and the good rows are prepared; the file a bad row names is not counted
again as holding no listed clip (`python -m c2f.data.prepare`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from c2f.data.prepare.__main__ import main
from c2f.data.prepare.sources import PathIndex

WAVE = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
UNUSED = "hold no clip of this dataset's lists and are left out"


def write(path: Path, seconds: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.tile(WAVE, seconds), 16000)


def prepare(name: str, src: Path, out: Path, *extra: str) -> int:
    return main([name, "--src", str(src), "--out", str(out), "--workers", "1", "--no-progress",
                 "--no-stats", *extra])


def test_esc50_rows_cut_short_blank_or_with_odd_digits(tmp_path, capsys):
    """A row of fewer than four cells or with a blank one was a ValueError traceback (it could
    not be unpacked) or a clip without a file name; a fold or target of digits int() does not
    read ('²') was one too. Each is a line of problems.txt; the good rows are prepared."""
    src = tmp_path / "ESC-50-master"
    rows = ["1-1-A-0.wav,1,0,dog", "2-2-A-0.wav,2,0,dog",
            "3-3-A-0.wav", "3-4-A-0.wav,3,0",  # cut short: lines 4 and 5
            ",3,0,dog", "3-5-A-0.wav,3,0,",  # blank cells: lines 6 and 7
            "3-6-A-0.wav,²,0,dog", "3-7-A-0.wav,3,²,dog",  # lines 8 and 9
            "1-8-A-0.wav,١,0,dog"]  # Arabic-Indic 1: fold 1, not a split 'fold١' none reads
    (src / "meta").mkdir(parents=True)
    (src / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n" + "\n".join(rows) + "\n")
    for row in rows:
        if row.split(",")[0]:
            write(src / "audio" / row.split(",")[0])
    out = tmp_path / "esc50"
    assert prepare("esc50", src, out) == 0
    said = capsys.readouterr().out
    assert "missing 0, failed 0; manifests: fold1_train.json 1, fold1_eval.json 2" in said
    assert (out / "problems.txt").read_text().splitlines() == [
        "esc50.csv:4: 3-3-A-0.wav: no fold, target, category (a row is "
        "filename,fold,target,category,...: got '3-3-A-0.wav'); clip left out",
        "esc50.csv:5: 3-4-A-0.wav: no category (a row is filename,fold,target,category,...: "
        "got '3-4-A-0.wav,3,0'); clip left out",
        "esc50.csv:6: no filename (a row is filename,fold,target,category,...: got ',3,0,dog'); "
        "clip left out",
        "esc50.csv:7: 3-5-A-0.wav: no category (a row is filename,fold,target,category,...: "
        "got '3-5-A-0.wav,3,0,'); clip left out",
        "esc50.csv:8: 3-6-A-0.wav: fold '²' must be 1-5 and target '0' 0-49; clip left out",
        "esc50.csv:9: 3-7-A-0.wav: fold '3' must be 1-5 and target '²' 0-49; clip left out"]


def test_a_listed_path_that_names_no_file_is_found_nowhere(tmp_path):
    """ESC-50's filename '/' was a ValueError (a path without a name has no suffix to drop)."""
    write(tmp_path / "audio" / "x.wav")
    index = PathIndex(tmp_path / "audio")
    assert [index.find(name) for name in ("/", ".", "")] == [None, None, None]
    assert index.find("x.wav").path == tmp_path / "audio" / "x.wav"
