"""Every sweep in sweeps/ composes, expands into valid runs, matches its header, and dry-runs."""
from __future__ import annotations

import dataclasses
import functools
import itertools
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from c2f.plan import build_plan, phase_factors
from c2f.report.runs import Run, pretrained_from
from c2f.report.variants import flat_setting, name_variants
from c2f.spec import build_spec, semantic_config
from tests.conftest import ROOT, run_cli, run_dirs

SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
# Training clips behind the headers' compute estimates (the builtin preset renders 1,650).
TRAIN_CLIPS = {"vggsound": 183_730, "voxceleb1": 138_361, "kinetics_sounds": 20_000,
               "audioset_full": 2_000_000, "builtin": 1_650, "esc50": 1_600}
UNITS = {"TFLOPs": 1e12, "PFLOPs": 1e15, "EFLOPs": 1e18}


@functools.cache
def sweep_jobs(name: str, *extra: str, first: int | None = None) -> list[dict]:
    """The resolved config of every job of a sweep (or of its `first` jobs), as its Cartesian
    `hydra.sweeper.params`.

    Cached: treat the result as read-only."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        params = compose(name, overrides=list(extra), return_hydra_config=True).hydra.sweeper.params
        choices = [[f"{key}={value}" for value in str(values).split(",")]
                   for key, values in params.items()]
        return [OmegaConf.to_container(compose(name, overrides=[*combo, *extra]), resolve=True)
                for combo in itertools.islice(itertools.product(*choices), first)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A stand-in for the DeiT checkpoint the paper sweeps require: plans read only its shape
    (768 wide, 12 blocks), so it holds one small tensor a block and the positional table."""
    import torch

    path = tmp_path_factory.mktemp("weights") / "deit_base_distilled_patch16_384.pth"
    state = {f"blocks.{i}.norm1.weight": torch.ones(768) for i in range(12)}
    torch.save({**state, "pos_embed": torch.zeros(1, 2 + 24 * 24, 768)}, path)
    return f"model.pretrained={path}"


def header(name: str) -> str:
    lines = (ROOT / "sweeps" / f"{name}.yaml").read_text().splitlines()
    return " ".join(line.lstrip("# ") for line in itertools.takewhile(lambda s: s.startswith("#"),
                                                                       lines))


def test_every_table_has_a_sweep():
    assert {"table1", "table1_cnn14", "table2", "table3", "table4", "table5", "table6",
            "table6_ssast_pretrain", "table6_ssast_finetune", "builtin"} <= set(SWEEPS)


@pytest.mark.parametrize("name", SWEEPS)
def test_header_gives_command_and_job_count(name):
    text = header(name)
    assert f"python run.py -m -cn {name}" in text
    jobs = sweep_jobs(name)
    specs = [build_spec(job) for job in jobs]
    assert f"{len(jobs)} jobs" in text
    assert len({spec.run_id for spec in specs}) == len(jobs), "two jobs of a sweep share a run"
    paper = name.startswith("table") or name == "esc50"
    # AST-Base starts from ImageNet (or SSAST) weights; CNN14, HTS-AT and SSAST's pretraining
    # from random ones, as their official recipes do
    assert all(spec.model.require_pretrained == (paper and spec.model.arch == "ast"
                                                 and spec.pretrain is None) for spec in specs)
    assert all(spec.trainer.num_workers == ("auto" if paper else 0) for spec in specs)


@pytest.mark.parametrize("name", SWEEPS)
def test_the_report_pairs_a_sweeps_jobs_as_its_rows(name):
    """No setting but those a table cell names tells a sweep's jobs apart (report/variants.py):
    a row that set a learning rate of its own would be a variant without a baseline."""
    runs = []
    for job in sweep_jobs(name):
        spec = build_spec(job)
        runs.append(Run(path=spec.run_dir, dataset=spec.dataset.name, model=spec.model.name,
                        method=spec.compression.name, seed=spec.seed, budget=spec.dataset.epochs,
                        phases=tuple(phase_factors(spec.schedule)), metric="", records=[],
                        finished=True, pretrain=spec.pretrain is not None,
                        pretrained_from=pretrained_from(job["model"].get("pretrained")),
                        adaptive=spec.schedule.switch.rule if spec.schedule.switch else "",
                        setting=flat_setting(semantic_config(job))))
    name_variants(runs)
    assert [(r.model, r.method) for r in runs] == [
        (job["model"]["name"], job["compression"]["name"]) for job in sweep_jobs(name)]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SWEEPS if "estimated training compute" in header(n)
                                  .lower()])
def test_header_compute_matches_the_plans(name, weights):
    value, unit = re.search(r"compute[^:]*:\s*([\d.]+) ([TPE]FLOPs)", header(name)).groups()
    total = 0
    for job in sweep_jobs(name):  # composed once for the file; the weights set on a copy
        if job["model"]["require_pretrained"]:  # the paper's AST-Base rows
            job = {**job, "model": {**job["model"], "pretrained": weights.split("=", 1)[1]}}
        spec = build_spec(job)
        plan = build_plan(spec)
        clips = None if spec.pretrain else TRAIN_CLIPS[spec.dataset.name]
        plan = dataclasses.replace(plan, train_samples=clips)
        total += plan.predicted_flops()
    assert total / UNITS[unit] == pytest.approx(float(value), rel=0.05)


def test_convergence_tables_reuse_the_budget_tables_runs():
    """Tables 3 and 5 read Tables 2 and 4's runs: relaunching them trains nothing new."""
    for budget, convergence in (("table2", "table3"), ("table4", "table5")):
        runs = {build_spec(job).run_dir for job in sweep_jobs(budget)}
        assert {build_spec(job).run_dir for job in sweep_jobs(convergence)} == runs


def test_table4_baselines_are_table2s():
    def baselines(name):
        return {build_spec(job).run_dir for job in sweep_jobs(name)
                if job["schedule"]["name"] == "baseline"}
    assert baselines("table4") and baselines("table4") <= baselines("table2")


def test_launcher_does_not_change_the_run():
    """The launcher group is not part of a run's identity (same folder, same W&B id)."""
    ids = {build_spec(sweep_jobs("table4", f"launcher={launcher}", first=1)[0]).run_id
           for launcher in ("local", "submitit_local", "slurm")}
    assert len(ids) == 1


@pytest.mark.slow
def test_dry_run_lists_every_job_and_plan(tmp_path, data_dir, weights):
    """A SLURM sweep's dry run plans every job where it is launched and submits nothing (it
    would queue one array task per job just to print a plan)."""
    runs = tmp_path / "runs"
    proc = run_cli(["-m", "-cn", "table4", "trainer.dry_run=true", "logger=disabled",
                    "launcher=slurm", weights], runs, data_dir)
    out = proc.stdout + proc.stderr
    assert "dry run: 18 job(s) planned here, none submitted (slurm would get partition=" in out
    # the paper's data is not here: its compute cannot be counted, and it says so
    assert "no job's data is here to count its predicted compute" in out
    assert not list(tmp_path.rglob(".submitit")) and "Submitted" not in out
    pretrained = weights.split("=", 1)[1]  # set on a copy of the jobs composed once
    expected = {build_spec({**job, "model": {**job["model"], "pretrained": pretrained}}).run_id
                for job in sweep_jobs("table4")}
    assert set(re.findall(r"^run (\w+) -> ", out, re.M)) == expected
    assert out.count("(dry run: nothing trained)") == 18
    assert out.count("GFLOPs/sample") == 18
    # the paper's recipe on every job: x0.5 per epoch from epoch 2 (paper §3.2, run16.sh)
    recipe = "lr 1e-05, warmup 1000 steps in 20 stairs, x0.5 every 1 epoch(s) from epoch 2"
    assert out.count(recipe) == 18
    assert run_dirs(runs) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table1", "table4"])  # every table's jobs require it (above)
def test_paper_sweeps_stop_before_any_job_without_pretrained_weights(tmp_path, data_dir, name):
    """A launch stops before any job (here the paper's data is missing too: test_configs
    checks the weights alone); a dry run plans every job, with the weights as a note."""
    runs = tmp_path / "runs"
    proc = run_cli(["-m", "-cn", name, "logger=disabled"], runs,
                   data_dir, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1
    jobs = re.search(r"(\d+) jobs", header(name)).group(1)  # the header's count is tested above
    assert f"{jobs} of {jobs} job(s) cannot run; nothing was started" in proc.stderr
    assert "Traceback" not in proc.stderr and "dry run" not in proc.stdout
    assert run_dirs(runs) == []
    dry = run_cli(["-m", "-cn", name, "trainer.dry_run=true", "logger=disabled"], runs, data_dir)
    out = dry.stdout + dry.stderr
    assert out.count("(the dry run goes on; a launch stops here)") == int(jobs)
    assert "deit_base_distilled_patch16_384" in out and "model.pretrained=" in out
    assert f"dry run: {jobs} job(s) planned here, none trained" in out
    assert run_dirs(runs) == []


def test_a_dry_run_sums_its_jobs_predicted_compute(tmp_path, data_dir):
    """Each job's plan says its predicted compute (clips counted without reading audio), and
    the sweep ends with their sum."""
    from tests.conftest import TINY

    proc = run_cli(["-m", *TINY, "compression=fshift", "schedule=2phase,3phase",
                    "trainer.dry_run=true", "logger=disabled"], tmp_path / "runs", data_dir)
    out = proc.stdout + proc.stderr
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    each = [float(v) * scale[u] for v, u in
            re.findall(r"predicted training compute: ([\d.]+) (\w)FLOPs over \d+ epochs", out)]
    value, unit = re.search(r"dry run: predicted training compute ([\d.]+) (\w)FLOPs over 2 "
                            r"job\(s\)", out).groups()
    assert len(each) == 2 and each[0] != each[1]
    assert float(value) * scale[unit] == pytest.approx(sum(each), rel=1e-3)
    assert run_dirs(tmp_path / "runs") == []
