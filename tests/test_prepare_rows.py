"""Bad rows of the publishers' lists (cut short, a cell left blank, a number that is none or
places no segment) become problems.txt lines naming the list, the line and what is wrong,
never a traceback, and the good rows are prepared; the file a bad row names is not counted
again as holding no listed clip (`python -m c2f.data.prepare`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from c2f.data.prepare.__main__ import main
from c2f.data.prepare.registry import time_problem
from c2f.data.prepare.sources import PathIndex
from tests.dataset_layouts import youtube_id

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


def kinetics_src(root: Path, rows: dict[str, list[str]], files: list[str]) -> list[str]:
    """Kinetics-400's train.csv and validate.csv of `rows` (after the header) in root/lists,
    the audio `files` in root/src; the options that prepare them for the class in the rows."""
    (root / "lists").mkdir(parents=True)
    for name in ("train.csv", "validate.csv"):
        (root / "lists" / name).write_text("label,youtube_id,time_start,time_end,split\n"
                                           + "".join(f"{row}\n" for row in rows.get(name, [])))
    for name in files:
        write(root / "src" / f"{name}.wav", 10)
    (root / "classes.txt").write_text("playing piano\n")
    return ["--classes", str(root / "classes.txt"), "--lists", str(root / "lists" / "train.csv"),
            str(root / "lists" / "validate.csv")]


def test_kinetics_rows_cut_short(tmp_path):
    """A row of a Kinetics-Sounds class with its label alone was an IndexError traceback; with
    no times, 'times [] are not numbers'. Both say the row is cut short; the files of an id so
    named are not counted again as holding no listed clip."""
    good, short = youtube_id(1), youtube_id(2)
    options = kinetics_src(tmp_path, {
        "train.csv": ["playing piano", f"playing piano,{good},10,20",
                      f"playing piano,{short}", "playing piano,,0,10", "dancing"],
        "validate.csv": [f"playing piano,{short},30"]},
        [f"{good}_000010_000020", f"{short}_000030_000040", youtube_id(3)])
    out = tmp_path / "kinetics_sounds"
    assert prepare("kinetics_sounds", tmp_path / "src", out, *options) == 0
    expected = "expected label, youtube_id, time_start, time_end; got"
    problems = (out / "problems.txt").read_text().splitlines()
    assert problems[:-1] == [
        f"train.csv:2: {expected} 'playing piano'; row left out",
        f"train.csv:4: {expected} 'playing piano,{short}'; row left out",
        "train.csv:5: youtube_id is empty; got 'playing piano,,0,10'; row left out",
        f"validate.csv:2: {expected} 'playing piano,{short},30'; row left out"]
    assert problems[-1].startswith(f"1 audio file(s) under {tmp_path / 'src'} {UNUSED} "
                                   f"('{youtube_id(3)}.wav')")


def test_kinetics_times_that_place_no_segment(tmp_path):
    """Negative times and an end not after the start were taken without a word (a negative
    start cut a whole video before its beginning); they are left out as AudioSet's and
    VGGSound's are, each line saying what is wrong with which time, 'inf' and 'nan' that they
    are not finite. A start that reads finds the row's file, one that does not claims the
    files of its id: none is counted again as holding no listed clip."""
    ids = [youtube_id(n) for n in range(10, 19)]
    times = ["-5,5", "0,-1", "20,10", "10,10", "nan,10", "1e400,10", "0,1e300", "²,10", "0,10"]
    options = kinetics_src(tmp_path, {"train.csv": [f"playing piano,{ident},{pair}"
                                                    for ident, pair in zip(ids, times)]},
                           [f"{ids[0]}_000000_000010", f"{ids[1]}_000000_000010",
                            f"{ids[2]}_000020_000030", f"{ids[3]}", f"{ids[4]}_000010_000020",
                            f"{ids[5]}", f"{ids[6]}", f"{ids[7]}", f"{ids[8]}_000000_000010"])
    out = tmp_path / "kinetics_sounds"
    assert prepare("kinetics_sounds", tmp_path / "src", out, *options) == 0
    assert (out / "problems.txt").read_text().splitlines() == [
        f"train.csv:2: {ids[0]}: time_start '-5' is negative; clip left out",
        f"train.csv:3: {ids[1]}: time_end '-1' is negative; clip left out",
        f"train.csv:4: {ids[2]}: time_end '10' is not after time_start '20'; clip left out",
        f"train.csv:5: {ids[3]}: time_end '10' is not after time_start '10'; clip left out",
        f"train.csv:6: {ids[4]}: time_start 'nan' is not a finite number; clip left out",
        f"train.csv:7: {ids[5]}: time_start '1e400' is past the end of any video (over "
        "10,000,000 s); clip left out",
        f"train.csv:8: {ids[6]}: time_end '1e300' is past the end of any video (over "
        "10,000,000 s); clip left out",
        f"train.csv:9: {ids[7]}: time_start '²' is not a number; clip left out"]
    assert (out / "train.json").read_text().count('"wav"') == 1  # the good row's clip


def test_audioset_rows_whose_times_place_no_segment_or_without_an_id(tmp_path):
    """As Kinetics-Sounds' (above): a negative time, an end not after the start, a time past
    any video's end (1e306 s was an OverflowError traceback, in milliseconds) and one that is
    no finite number leave the row out, saying which; a row without a YTID says so, not listed
    as a clip missing under an empty id; a row cut short claims the files of its id. Blank
    positive_labels say so ('unknown label(s) (none)' before); every line says the row is out."""
    ids = [youtube_id(n) for n in range(20, 30)]
    src = tmp_path / "audioset"
    src.mkdir()
    (src / "class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/05r5c,Piano\n")
    head = "# Segments csv\n# num_ytids=1\n# YTID, start_seconds, end_seconds, positive_labels\n"
    times = ["0.000, 10.000", "-5.000, 5.000", "30.000, 20.000", "30.000, 30.000",
             "1e306, 1e307", "nan, 10.000", "0.000, -inf"]
    (src / "balanced_train_segments.csv").write_text(
        head + "".join(f'{ident}, {pair}, "/m/05r5c"\n' for ident, pair in zip(ids, times))
        + f'{ids[7]}, 0.000\n, 0.000, 10.000, "/m/05r5c"\n{ids[9]}, 0.000, 10.000, ""\n'
        f'{ids[9]}, 20.000, 30.000, "/m/x,/m/05r5c,/m/y"\n')
    (src / "eval_segments.csv").write_text(head + f'{ids[8]}, 20.000, 30.000, "/m/05r5c"\n')
    for name in (f"Y{ids[0]}", f"{ids[8]}_20.000_30.000", f"{ids[1]}_0.000_10.000",
                 f"{ids[2]}_30.000_40.000", f"{ids[3]}", f"{ids[4]}", f"{ids[5]}_0.000_10.000",
                 f"{ids[6]}_0.000_10.000", f"{ids[7]}_0.000_10.000"):
        write(src / f"{name}.wav", 10)
    out = tmp_path / "data" / "audioset"
    assert prepare("audioset", src, out) == 0
    left_out = "; clip left out"
    assert (out / "problems.txt").read_text().splitlines() == [
        f"balanced_train_segments.csv:5: {ids[1]}: start_seconds '-5.000' is negative{left_out}",
        f"balanced_train_segments.csv:6: {ids[2]}: end_seconds '20.000' is not after "
        f"start_seconds '30.000'{left_out}",
        f"balanced_train_segments.csv:7: {ids[3]}: end_seconds '30.000' is not after "
        f"start_seconds '30.000'{left_out}",
        f"balanced_train_segments.csv:8: {ids[4]}: start_seconds '1e306' is past the end of any "
        f"video (over 10,000,000 s) and end_seconds '1e307' is past the end of any video (over "
        f"10,000,000 s){left_out}",
        f"balanced_train_segments.csv:9: {ids[5]}: start_seconds 'nan' is not a finite "
        f"number{left_out}",
        f"balanced_train_segments.csv:10: {ids[6]}: end_seconds '-inf' is not a finite "
        f"number{left_out}",
        "balanced_train_segments.csv:11: expected YTID, start_seconds, end_seconds, "
        f"positive_labels; got '{ids[7]},0.000'; row left out",
        "balanced_train_segments.csv:12: YTID is empty; got ',0.000,10.000,/m/05r5c'; row left "
        "out",
        f"balanced_train_segments.csv:13: {ids[9]}: positive_labels is empty{left_out}",
        f"balanced_train_segments.csv:14: {ids[9]}: unknown label(s) /m/x, /m/y not in "
        f"class_labels_indices.csv{left_out}",
        "unbalanced_train_segments.csv not found: full_train.json is not written "
        "(balanced_train and eval are)"]


def test_vggsound_rows_with_a_blank_cell_or_a_start_that_is_no_time(tmp_path):
    """A start of digits int() does not read ('²') was a ValueError traceback; a blank label
    made a class named '' that the model was trained on, a blank id a clip missing under no
    name. Each row is left out saying only what is wrong ('inf' is no finite number, '-5'
    negative, '2.5' not whole seconds), and claims its file."""
    ids = [youtube_id(n) for n in range(30, 38)]
    src = tmp_path / "src"
    rows = [f"{ids[0]},10,dog,train", f"{ids[1]},10,cat,test", f"{ids[2]},²,dog,train",
            f"{ids[3]},10,,train", ",10,dog,train", f"{ids[4]},inf,dog,test",
            f"{ids[5]},-5,dog,train", f"{ids[6]},2.5,dog,validation", f"{ids[7]},10"]
    src.mkdir()
    (src / "vggsound.csv").write_text("".join(f"{row}\n" for row in rows))
    for name in (f"{ids[0]}_000010", f"{ids[1]}_000010", f"{ids[2]}_000010",
                 f"{ids[3]}_000010", f"{ids[4]}_000000", f"{ids[5]}_000000",
                 f"{ids[6]}_000002", f"{ids[7]}_000010"):
        write(src / f"{name}.wav", 10)
    out = tmp_path / "vggsound"
    assert prepare("vggsound", src, out) == 0
    assert (out / "problems.txt").read_text().splitlines() == [
        f"vggsound.csv:3: {ids[2]}: start '²' is not a number; row left out",
        f"vggsound.csv:4: {ids[3]}: label is empty; row left out",
        "vggsound.csv:5: id is empty; row left out",
        f"vggsound.csv:6: {ids[4]}: start 'inf' is not a finite number; row left out",
        f"vggsound.csv:7: {ids[5]}: start '-5' is negative; row left out",
        f"vggsound.csv:8: {ids[6]}: split 'validation' must be train or test and start '2.5' "
        "is not whole seconds; row left out",
        f"vggsound.csv:9: expected 4 columns (id, start, label, split), got 2: '{ids[7]},10'; "
        "row left out"]
    assert (out / "class_labels_indices.csv").read_text().splitlines()[1:] == [
        "0,/m/vggsd000,cat", "1,/m/vggsd001,dog"]


def test_numbers_too_long_for_a_float_or_for_int(tmp_path):
    """A VGGSound start of 400 digits was an OverflowError traceback (int to float), one or an
    ESC-50 fold or target of over 4,300 digits a ValueError (int() refuses them); '1e400' and
    400 digits, finite numbers float() reads as inf, were said to be 'not a finite number'.
    Each is past any video's end or out of range, a problems.txt line; 'inf' stays not finite."""
    assert time_problem("start", "1e400") == time_problem("start", "9" * 400).replace(
        "9" * 400, "1e400") == "start '1e400' is past the end of any video (over 10,000,000 s)"
    assert [time_problem("t", text) for text in ("-1e400", "+Infinity", " INF", "nan", "0")] == [
        "t '-1e400' is negative", "t '+Infinity' is not a finite number",
        "t ' INF' is not a finite number", "t 'nan' is not a finite number", None]
    ids = [youtube_id(n) for n in range(40, 44)]
    src, huge = tmp_path / "vgg", "9" * 5000
    src.mkdir()
    (src / "vggsound.csv").write_text(f"{ids[0]},10,dog,train\n{ids[1]},10,cat,test\n"
                                      f"{ids[2]},{'9' * 400},dog,train\n{ids[3]},{huge},dog,test\n")
    for name in (f"{ids[0]}_000010", f"{ids[1]}_000010", ids[2], ids[3]):
        write(src / f"{name}.wav", 10)
    assert prepare("vggsound", src, tmp_path / "vggsound") == 0
    problems = (tmp_path / "vggsound" / "problems.txt").read_text().splitlines()
    assert problems == [  # and no file counted as holding no listed clip
        f"vggsound.csv:{n}: {ids[n - 1]}: start {start!r} is past the end of any video (over "
        "10,000,000 s); row left out" for n, start in ((3, "9" * 400), (4, huge))]
    esc = tmp_path / "ESC-50-master"
    rows = ["1-1-A-0.wav,1,0,dog", "2-2-A-0.wav,2,0,dog", f"3-3-A-0.wav,{huge},0,dog",
            f"3-4-A-0.wav,3,{huge},dog", "4-5-A-0.wav,0004,00,dog"]  # zeros before: as before
    (esc / "meta").mkdir(parents=True)
    (esc / "meta" / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n" + "\n".join(rows) + "\n")
    for row in rows:
        write(esc / "audio" / row.split(",")[0])
    assert prepare("esc50", esc, tmp_path / "esc50") == 0
    problems = (tmp_path / "esc50" / "problems.txt").read_text().splitlines()
    assert problems == [
        f"esc50.csv:4: 3-3-A-0.wav: fold {huge!r} must be 1-5 and target '0' 0-49; clip left out",
        f"esc50.csv:5: 3-4-A-0.wav: fold '3' must be 1-5 and target {huge!r} 0-49; clip left out"]
    assert (tmp_path / "esc50" / "fold4_eval.json").read_text().count('"wav"') == 1


def test_voxceleb1_paths_with_an_empty_part(tmp_path):
    """'1 /a/b' passed as a path (two slashes) and made a speaker named '' a class; a path of
    three parts with an empty one is a malformed line like any other. A line of an unknown set
    that names a file claims it."""
    src = tmp_path / "vox"
    for relative in ("id10001/v/00001.wav", "id10002/v/00001.wav", "id10003/v/00001.wav"):
        write(src / "wav" / relative)
    (src / "iden_split.txt").write_text("1 id10001/v/00001.wav\n3 id10002/v/00001.wav\n"
                                        "1 /v/00001.wav\n1 id10001//00001.wav\n2 id10001/v/\n"
                                        "4 id10003/v/00001.wav\n")
    out = tmp_path / "voxceleb1"
    assert prepare("voxceleb1", src, out) == 0
    expected = "expected '<1|2|3> idXXXXX/<video>/<n>.wav', got"
    assert (out / "problems.txt").read_text().splitlines() == [
        f"iden_split.txt:3: {expected} '1 /v/00001.wav'",
        f"iden_split.txt:4: {expected} '1 id10001//00001.wav'",
        f"iden_split.txt:5: {expected} '2 id10001/v/'",
        f"iden_split.txt:6: {expected} '4 id10003/v/00001.wav'"]
    assert [line.split(",")[1] for line in
            (out / "class_labels_indices.csv").read_text().splitlines()[1:]] == [
        "id10001", "id10002"]


def test_speechcommands_held_out_lines_that_name_no_clip_or_another_suffix(tmp_path,
                                                                           capsys):
    """A line of validation_list.txt or testing_list.txt that is no <word>/<clip> ('yes', '/',
    and 'yes/.', keyed 'yes' as a path) was dropped without a word ('no/..' listed a clip
    '...wav' missing), and one naming its clip with another suffix than the file's
    ('yes/b.flac' for yes/b.wav, 'no/b' without one) held nothing out: both clips were trained
    on. The first is a problems.txt line; the second holds its clip out, keyed as the files
    are (`PathIndex.key`)."""
    src = tmp_path / "speech_commands_v0.02"
    for word in ("yes", "no"):
        for clip in ("a", "b", "c"):
            write(src / word / f"{clip}_nohash_0.wav")
    (src / "validation_list.txt").write_text("yes/a_nohash_0.wav\nyes\n/\n"
                                             "yes/b_nohash_0.flac\n")
    (src / "testing_list.txt").write_text("no/a_nohash_0.wav\nno/b_nohash_0\nno//x.wav\n"
                                          "yes/.\nno/..\n")
    out = tmp_path / "speechcommands"
    assert prepare("speechcommands", src, out) == 0
    said = capsys.readouterr().out
    assert "missing 0, failed 0; manifests: train.json 2, valid.json 2, test.json 2" in said
    assert (out / "problems.txt").read_text().splitlines() == [
        "validation_list.txt:2: expected <word>/<clip>.wav, got 'yes'; line left out",
        "validation_list.txt:3: expected <word>/<clip>.wav, got '/'; line left out",
        "testing_list.txt:3: expected <word>/<clip>.wav, got 'no//x.wav'; line left out",
        "testing_list.txt:4: expected <word>/<clip>.wav, got 'yes/.'; line left out",
        "testing_list.txt:5: expected <word>/<clip>.wav, got 'no/..'; line left out"]
    assert [PathIndex.key(path) for path in ("yes/b.flac", "no/b", "a/b.c.wav", "/", ".")] == [
        "yes/b", "no/b", "a/b.c", "/", "."]


def test_folder_csv_splits_that_cannot_name_a_manifest(tmp_path, capsys):
    """A split column value is the manifest's file name: '../held' wrote held.json beside
    --out, 'a/b' a folder inside it. Such a row is left out, said; the others are prepared. A
    NUL byte (a UTF-16 file read as UTF-8) is no text list: refused, naming its line."""
    src = tmp_path / "recordings"
    rows = [f"{word}/{n}.wav,{word},{'eval' if n == 0 else 'train'}"
            for word in ("yes", "no") for n in range(3)]
    rows += ["yes/3.wav,yes,../held", "no/3.wav,no,a/b"]
    for row in rows:
        write(src / row.split(",")[0])
    listed = tmp_path / "clips.csv"
    out = tmp_path / "data" / "mine"
    command = ["folder", "--src", str(src), "--out", str(out), "--workers", "1", "--no-progress",
               "--no-stats", "--lists", str(listed)]
    listed.write_text("file,label,split\n" + "\n".join([*rows, "no/4.wav,no,a\0b"]) + "\n")
    assert main(command) == 2 and not out.exists()  # on every Python (3.10's csv refuses it)
    assert capsys.readouterr().err == f"error: {listed}: line 10 holds a NUL byte: not a text " \
        "CSV (a UTF-16 file? save it as UTF-8)\n"
    listed.write_text("file,label,split\n" + "\n".join(rows) + "\n")
    assert main(command) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["eval.json", "prepared.json",
                                                          "train.json"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mine"]
    why = "cannot name a manifest file (<split>.json in --out); give one without '/'; left out"
    assert (out / "problems.txt").read_text().splitlines() == [
        f"clips.csv:8: split '../held' {why}", f"clips.csv:9: split 'a/b' {why}"]


def test_text_lists_that_are_no_utf8_are_named(tmp_path, capsys):
    """LibriSpeech's *.trans.txt, Speech Commands' held-out lists and VoxCeleb1's
    iden_split.txt in another encoding were UnicodeDecodeError tracebacks; each is named as a
    CSV list is, with the fix and exit code 2. VoxCeleb1's vox1_meta.csv only names the
    speakers: unreadable, it stopped the preparation; it is a problems.txt line, and the
    speaker ids name the classes."""
    latin = "café\n".encode("latin-1")
    chapter = tmp_path / "librispeech" / "LibriSpeech" / "train-clean-100" / "19" / "198"
    write(chapter / "19-198-0000.flac")
    (chapter / "19-198.trans.txt").write_bytes(b"19-198-0000 " + latin)
    commands = tmp_path / "speechcommands"
    write(commands / "yes" / "a_nohash_0.wav")
    (commands / "validation_list.txt").write_bytes(latin)
    (commands / "testing_list.txt").write_text("yes/a_nohash_0.wav\n")
    vox, named = tmp_path / "voxceleb1", tmp_path / "voxceleb1_named"
    for folder in (vox, named):
        write(folder / "wav" / "id10001" / "v" / "00001.wav")
    (vox / "iden_split.txt").write_bytes(b"1 id10001/v/00001.wav " + latin)
    (named / "iden_split.txt").write_text("1 id10001/v/00001.wav\n")
    (named / "vox1_meta.csv").write_bytes(b"VoxCeleb1 ID\tVGGFace1 ID\nid10001\t" + latin)
    for name, src, unreadable in (
            ("librispeech", tmp_path / "librispeech", chapter / "19-198.trans.txt"),
            ("speechcommands", commands, commands / "validation_list.txt"),
            ("voxceleb1", vox, vox / "iden_split.txt")):
        assert prepare(name, src, tmp_path / src.name / "out" / name) == 2
        said = capsys.readouterr().err
        assert f"error: {unreadable}: cannot read as UTF-8 text" in said
        assert "; if it is the right file, save it as UTF-8" in said
    out = tmp_path / "named" / "voxceleb1"
    assert prepare("voxceleb1", named, out) == 0
    assert (out / "problems.txt").read_text().splitlines() == [
        f"{named / 'vox1_meta.csv'}: cannot read as UTF-8 text ('utf-8' codec can't decode byte "
        "0xe9 in position 36: invalid continuation byte); if it is the right file, save it as "
        "UTF-8; the speaker ids name the classes instead"]
    assert (out / "class_labels_indices.csv").read_text().splitlines()[1:] == [
        "0,id10001,id10001"]
