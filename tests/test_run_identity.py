"""What names a run: its data (the bytes of its manifests and label CSV), not where they lie;
and no key that c2f does not read."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.prepared import complete_dataset
from c2f.spec import ConfigError, RunSpec, build_spec
from tests.conftest import ROOT, run_cli


def spec_for(*overrides: str) -> RunSpec:
    """The spec run.py builds: the config made complete (prepared values, data digest)."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return build_spec(OmegaConf.to_container(complete_dataset(cfg), resolve=True))


def prepared_vggsound(data_dir: Path, clips: int = 3) -> Path:
    """data_dir/vggsound as the preparation writes it: audio listed relative to the folder."""
    folder = data_dir / "vggsound"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "eval"):
        data = [{"wav": f"audio/{split}{i}.flac", "labels": f"/m/v{i % 2:03d}"}
                for i in range(clips)]
        (folder / f"{split}.json").write_text(json.dumps({"data": data}))
    (folder / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n0,/m/v000,dog\n1,/m/v001,cat\n")
    return folder


def vggsound_spec(data_dir: Path, *more: str) -> RunSpec:
    return spec_for("dataset=vggsound", f"paths.data_dir={data_dir}",
                    "model.require_pretrained=false", *more)


def test_a_runs_data_is_part_of_its_id_where_the_data_lies_is_not(tmp_path):
    first = tmp_path / "a" / "data"
    folder = prepared_vggsound(first)
    original = vggsound_spec(first)
    assert original.dataset.digest and original.semantic["dataset"]["digest"]
    # moved elsewhere (another paths.data_dir): the same runs
    moved = tmp_path / "b" / "data"
    shutil.copytree(first, moved)
    assert vggsound_spec(moved).run_id == original.run_id
    # prepared again with one clip more, or another class list: other runs
    prepared_vggsound(moved, clips=4)
    more = vggsound_spec(moved)
    assert more.run_id != original.run_id and more.dataset.digest != original.dataset.digest
    shutil.copytree(first, tmp_path / "c" / "data")
    csv = tmp_path / "c" / "data" / "vggsound" / "class_labels_indices.csv"
    csv.write_text(csv.read_text().replace("cat", "bird"))
    assert vggsound_spec(tmp_path / "c" / "data").run_id not in (original.run_id, more.run_id)
    # the same files named through the manifest preset: the same data, whatever the preset
    own = spec_for("dataset=manifest", f"dataset.train_manifest={folder / 'train.json'}",
                   f"dataset.eval_manifest={folder / 'eval.json'}",
                   f"dataset.labels_csv={folder / 'class_labels_indices.csv'}",
                   "dataset.num_classes=2")
    assert own.dataset.digest == original.dataset.digest
    # its time mask, unless given, is AST's share (192 of 1024) of the input length
    assert own.dataset.timem == 192
    files = [f"dataset.train_manifest={folder / 'train.json'}", "dataset.num_classes=2",
             f"dataset.eval_manifest={folder / 'eval.json'}",
             f"dataset.labels_csv={folder / 'class_labels_indices.csv'}"]
    assert spec_for("dataset=manifest", *files, "dataset.target_length=384").dataset.timem == 72
    assert spec_for("dataset=manifest", *files, "dataset.target_length=384",
                    "dataset.timem=100").dataset.timem == 100
    # the built-in dataset is named by its settings, as before
    assert spec_for().dataset.digest is None and "digest" not in spec_for().semantic["dataset"]


def test_missing_data_stops_a_run_before_it_starts_saying_how_to_prepare_it(tmp_path):
    """A dry run still plans (without the data, whose digest is then left out of the id)."""
    data_dir = tmp_path / "data"
    with pytest.raises(ConfigError) as err:
        vggsound_spec(data_dir)
    folder = data_dir / "vggsound"
    assert str(err.value) == (
        f"dataset.train_manifest={folder / 'train.json'}: no such file. Prepare vggsound from "
        f"its download into that folder: python -m c2f.data.prepare vggsound --src "
        f"YOUR_VGGSOUND_DOWNLOAD --out {folder}. If it is prepared elsewhere, point "
        f"paths.data_dir (now {data_dir}) at the folder holding vggsound/")
    assert vggsound_spec(data_dir, "trainer.dry_run=true").dataset.digest is None
    # a manifest of your own: the format, and the command that makes one
    own = prepared_vggsound(tmp_path / "own")
    with pytest.raises(ConfigError, match=r"dataset.eval_manifest=.*/nope.json: no such file. "
                                          "Make an AST-format manifest"):
        spec_for("dataset=manifest", f"dataset.train_manifest={own / 'train.json'}",
                 f"dataset.eval_manifest={tmp_path / 'nope.json'}", "dataset.num_classes=2",
                 f"dataset.labels_csv={own / 'class_labels_indices.csv'}")
    # prepared, but a fold it does not have: the files it does have, not "prepare it"
    esc = data_dir / "esc50"
    esc.mkdir(parents=True)
    for name in ("fold1_train.json", "fold1_eval.json", "prepared.json"):
        (esc / name).write_text("{}")
    with pytest.raises(ConfigError) as err:
        spec_for("dataset=esc50", "dataset.fold=6", f"paths.data_dir={data_dir}",
                 "model.require_pretrained=false")
    assert str(err.value) == (
        f"dataset.train_manifest={esc / 'fold6_train.json'}: no such file; {esc} holds "
        "fold1_eval.json, fold1_train.json: check the setting that names it (dataset.fold, a "
        "split, the manifest's name)")


@pytest.mark.parametrize("override, says", [
    ("+seeed=1", "unknown top-level key(s) `seeed` (did you mean `seed`?)"),
    ("+compresion=fshift", "unknown top-level key(s) `compresion` (did you mean "
                           "`compression`?)"),
    ("+colour=red", "unknown top-level key(s) `colour`: c2f reads average, compression"),
])
def test_a_top_level_key_c2f_does_not_read_is_refused(override, says):
    """It would only have changed the run's id."""
    with pytest.raises(ConfigError) as err:
        spec_for(override)
    assert str(err.value).startswith(says)


def test_a_sweep_without_its_data_starts_no_job_and_says_how_to_prepare_each(tmp_path):
    """Through the real CLI: the launcher's check before any job names each missing dataset
    once, with its preparation command."""
    data_dir = tmp_path / "data"
    proc = run_cli(["-m", "dataset=vggsound,voxceleb1", "model.require_pretrained=false",
                    "logger=disabled"], tmp_path / "runs", data_dir, check=False,
                   env={"HYDRA_FULL_ERROR": "0"})
    assert "HYDRA_FULL_ERROR" not in proc.stderr  # a refusal, not a crash: no stack trace hint
    assert proc.returncode == 1 and "2 of 2 job(s) cannot run; nothing was started" in \
        proc.stderr
    for name in ("vggsound", "voxceleb1"):
        assert f"python -m c2f.data.prepare {name} --src YOUR_{name.upper()}_DOWNLOAD --out " \
               f"{data_dir / name}" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("full_error", ["0", "1"])
def test_an_override_naming_no_key_gets_the_closest_one_through_the_real_cli(tmp_path,
                                                                             full_error):
    """Hydra's "Could not override 'schedule.cc'" (and its advice to append `+schedule.cc`),
    then c2f's hint with the key meant; after Hydra's traceback where HYDRA_FULL_ERROR=1."""
    proc = run_cli(["schedule.cc=4", "compression=fshift"], tmp_path / "runs",
                   tmp_path / "data", check=False, env={"HYDRA_FULL_ERROR": full_error})
    assert proc.returncode == 1 and "Could not override 'schedule.cc'" in proc.stderr
    assert ("Traceback" in proc.stderr) == (full_error == "1")
    assert "hint: `schedule.cc`: `cc` is not a key of `schedule`; did you mean `schedule.c`?" \
        in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, hint", [
    (["compresion=fshift"], "`compresion` is not a key of the config, nor a config group; "
                            "did you mean `compression`?"),
    (["-m", "compression=fshift,pool_avg", "dataset.batch_sise=3,6"],
     "`batch_sise` is not a key of `dataset`; did you mean `dataset.batch_size`?"),
    # the group chosen on the command line decides which keys exist
    (["launcher=slurm", "hydra.launcher.partiton=gpu"],
     "`partiton` is not a key of `hydra.launcher`; did you mean `hydra.launcher.partition`?"),
    (["-cn", "table2", "trainer.dry_rn=true"], "did you mean `trainer.dry_run`?"),
    (["--cfg", "job", "schedule.cc=4"], "did you mean `schedule.c`?"),  # a flag's value
    (["--config-name=builtin", "schedule.initial_fractoin=0.5"],
     "did you mean `schedule.initial_fraction`?"),
    # a checkpoint named with `=` (PANNs' file): Hydra's grammar refuses it; the quoted form
    (["model=cnn14", "model.pretrained=/ckpt/Cnn14_mAP=0.431.pth"],
     """quote the value (and the whole argument for the shell): """
     """'model.pretrained="/ckpt/Cnn14_mAP=0.431.pth"'"""),
    (["-m", "model=cnn14", "model.pretrained=/c/a=1.pth,/c/b.pth"],  # a sweep: each value
     """'model.pretrained="/c/a=1.pth","/c/b.pth"'"""),
])
def test_override_hints_name_the_closest_key_or_group(argv, hint):
    from c2f.override_hints import unknown_override_hints

    hints = unknown_override_hints(argv)
    assert len(hints) == 1 and hint in hints[0], hints


def test_override_hints_say_nothing_of_keys_that_exist_or_are_appended():
    from c2f.override_hints import unknown_override_hints

    assert unknown_override_hints(["-m", "compression=fshift,patch_pi", "schedule=3phase",
                                   "schedule.c=2,4", "+extra.key=1", "~logger",
                                   "dataset=esc50", "dataset.fold=2"]) == []
    # keys whose value is ??? until set (the manifest preset's files) are keys
    assert unknown_override_hints(["dataset=manifest", "dataset.train_manifest=t.json",
                                   "dataset.labels_csv=l.csv"]) == []
    # a name far from every key: said, with no guess
    assert unknown_override_hints(["zzzzzz=1"]) == [
        "`zzzzzz`: `zzzzzz` is not a key of the config, nor a config group"]
