"""What every preparation reads one way: a list of lines (`list_lines`, `--classes` too) and the
times a YouTube file's name holds (`python -m c2f.data.prepare`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from c2f.data.prepare.__main__ import main
from c2f.data.prepare.sources import YouTubeIndex

WAVE = (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)


def write(path: Path, seconds: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.tile(WAVE, seconds), 16000)


def test_classes_file_that_cannot_be_read_is_named_as_every_list(tmp_path, capsys):
    """`--classes` was read apart from the other lists, with its own UTF-8 and BOM handling;
    it is read as they are (`list_lines`), with its own fix: a file of another encoding is
    named, exit code 2; a BOM is dropped."""
    src = tmp_path / "recordings"
    for word in ("yes", "no"):
        for n in range(3):
            write(src / word / f"{n}.wav")
    latin, bom = tmp_path / "latin.txt", tmp_path / "bom.txt"
    latin.write_bytes("yes\ncaf\xe9\n".encode("latin-1"))
    bom.write_text("\ufeffyes\nno\n")
    fix = "give a class_labels_indices.csv or a UTF-8 text file of class names, one per line"
    assert main(["folder", "--src", str(src), "--out", str(tmp_path / "data" / "mine"),
                 "--workers", "1", "--no-progress", "--no-stats", "--classes", str(latin)]) == 2
    assert (f"error: --classes {latin}: cannot read as UTF-8 text ('utf-8' codec can't decode "
            f"byte 0xe9 in position 7: invalid continuation byte); {fix}"
            in capsys.readouterr().err)
    out = tmp_path / "data" / "mine"
    assert main(["folder", "--src", str(src), "--out", str(out), "--workers", "1",
                 "--no-progress", "--no-stats", "--classes", str(bom)]) == 0
    assert (out / "class_labels_indices.csv").read_text().splitlines()[1:] == [
        "0,/m/own000,yes", "1,/m/own001,no"]


def test_a_decimal_time_is_in_seconds_whatever_characters_the_id_holds(tmp_path):
    """Whether a name's time is decimal (seconds only) was worked out again from the stem,
    after the id's last occurrence: with an all-digit id that reappears in the times
    (`<id>_20.000_<id>`), none was seen, 20.000 was also tried as 20 ms, and the row at 0 s
    took the file of the segment at 20 s. It is read from the times the name matched."""
    ident = "12345678901"
    write(tmp_path / f"{ident}_20.000_{ident}.wav")
    index = YouTubeIndex(tmp_path)
    assert index.find(ident, 0.0) is None
    assert index.find(ident, 20.0).path == tmp_path / f"{ident}_20.000_{ident}.wav"
