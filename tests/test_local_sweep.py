"""`launcher=submitit_local`: a sweep side by side on one machine, each job in a slot of its
own GPUs (or CPUs), never more jobs at a time than slots (hydra_plugins/c2f_plugins/
local_slots.py). Without GPUs here, the jobs' environments show which GPUs they were given."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from c2f.train.distributed import job_cpus
from hydra_plugins.c2f_plugins.local_slots import plan_slots
from tests.conftest import (
    DDP_ARGS,
    TINY,
    assert_matches_one_process,
    finish,
    read_metrics,
    run_cli,
    run_dirs,
    start_cli,
)


def live_jobs(folder: Path) -> dict[int, dict[str, str]]:
    """submitit's local job controllers under `folder`: pid -> the environment they got. A
    process forked by one of them (a library's subprocess call, caught between its fork and
    its exec, still shows the job's command line) is not a job of its own."""
    found, parents = {}, {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if "submitit.local._local" not in cmdline or str(folder) not in cmdline:
                continue
            pairs = (proc / "environ").read_bytes().decode(errors="replace").split("\0")
            stat = (proc / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        env = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        found[int(proc.name)] = {key: env.get(key, "") for key in
                                 ("CUDA_VISIBLE_DEVICES", "C2F_JOB_CPUS")}
        parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm)"
    return {pid: env for pid, env in found.items() if parents[pid] not in found}


@pytest.mark.slow
def test_jobs_run_in_slots_of_their_own_gpus_at_most_one_per_slot(tmp_path, data_dir):
    runs = tmp_path / "runs"
    launcher = start_cli(["-m", "launcher=submitit_local", "compression=fshift",
                          "schedule=2phase", "schedule.c=4", "seed=0,1,2,0", *TINY,
                          "logger=disabled", "hydra.launcher.visible_gpus=[3,5]"],
                         runs, data_dir)
    samples = []
    while launcher.poll() is None:
        samples.append(live_jobs(tmp_path))
        time.sleep(0.02)
    out = finish(launcher)
    # job #3 is #0 again: one run, trained once, its return given to both
    assert "1 job(s) are the same run as an earlier job" in out and "  #3 = #0 (" in out
    assert "Local sweep: 2 job(s) at a time (GPU 3, GPU 5), " \
           f"{max(1, job_cpus() // 2)} CPU(s) each" in out
    started = re.findall(r"started job (\d) of 3 on GPU (\d) \((\d) ended\)", out)
    assert started[:2] == [("1", "3", "0"), ("2", "5", "0")], out
    assert started[2][:2] in {("3", "3"), ("3", "5")} and started[2][2] in "12", out
    assert "sweep: 3 of 3 job(s) ended, 0 running, 0 waiting" in out
    jobs = {pid: env for sample in samples for pid, env in sample.items()}
    assert len(jobs) == 3, jobs  # every job seen while it ran
    assert {env["CUDA_VISIBLE_DEVICES"] for env in jobs.values()} == {"3", "5"}
    assert {env["C2F_JOB_CPUS"] for env in jobs.values()} == {str(max(1, job_cpus() // 2))}
    assert max(len(sample) for sample in samples) == 2  # side by side, never three
    for sample in samples:  # two jobs at once never share a GPU
        gpus = [env["CUDA_VISIBLE_DEVICES"] for env in sample.values()]
        assert len(gpus) == len(set(gpus)), sample
    assert len(run_dirs(runs)) == 3
    assert all((run / "summary.json").exists() for run in run_dirs(runs))


def test_a_slurm_sweep_where_there_is_no_slurm_says_what_to_do(tmp_path, data_dir):
    runs = tmp_path / "runs"
    proc = run_cli(["-m", "launcher=slurm", "seed=0,1", *TINY, "logger=disabled"], runs,
                   data_dir, env={"PATH": str(tmp_path), "HYDRA_FULL_ERROR": "0"}, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "launcher=slurm: no SLURM on this machine (sbatch and srun not on PATH)" in proc.stderr
    assert "launcher=submitit_local" in proc.stderr and run_dirs(runs) == []


def test_a_time_limit_shorter_than_slurms_warning_is_refused_at_launch(tmp_path, data_dir):
    """signal_delay_s (120) before a 1-minute limit: every job would get the requeue signal as
    it starts. Refused before anything is queued (checked before SLURM is looked for)."""
    runs = tmp_path / "runs"
    proc = run_cli(["-m", "launcher=slurm", "seed=0,1", *TINY, "logger=disabled",
                    "hydra.launcher.timeout_min=1"], runs, data_dir,
                   env={"PATH": str(tmp_path), "HYDRA_FULL_ERROR": "0"}, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "hydra.launcher.signal_delay_s=120 (the warning sent that long before the time " \
           "limit" in proc.stderr and "Give timeout_min above 2" in proc.stderr
    assert run_dirs(runs) == []


def test_slots_from_the_machine_and_the_launcher_keys(monkeypatch):
    cpus = job_cpus()
    two_each = plan_slots(gpus_per_node=2, visible_gpus=[0, 1, 2, 3], parallelism=None,
                          cpus_per_task=None)
    assert two_each.gpus == [[0, 1], [2, 3]] and two_each.cpus_per_job == max(1, cpus // 2)
    shared = plan_slots(gpus_per_node=None, visible_gpus=[4, 6], parallelism=5,
                        cpus_per_task=3)
    assert shared.gpus == [[4], [6], [4], [6], [4]] and shared.cpus_per_job == 3
    ddp = plan_slots(gpus_per_node=2, visible_gpus=[0, 1, 2], parallelism=None,
                     cpus_per_task=None, tasks_per_node=2)
    assert ddp.gpus == [[0, 1]]  # the third GPU makes no slot of two
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: one CPU per job, all CPUs busy
    cpu = plan_slots(gpus_per_node=None, visible_gpus=None, parallelism=None,
                     cpus_per_task=None)
    assert cpu.gpus == [[]] * cpus and cpu.cpus_per_job == 1
    assert "CPU" in cpu.describe()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,2")
    assert plan_slots(gpus_per_node=None, visible_gpus=None, parallelism=None,
                      cpus_per_task=None).gpus == [[7], [2]]
    with pytest.raises(ValueError, match=r"gpus_per_node=3, but this machine offers 2 GPU"):
        plan_slots(gpus_per_node=3, visible_gpus=None, parallelism=None, cpus_per_task=None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f1c,GPU-77aa")
    with pytest.raises(ValueError, match=r"hydra.launcher.visible_gpus=\[0,1,...\]"):
        plan_slots(gpus_per_node=None, visible_gpus=None, parallelism=None, cpus_per_task=None)
    with pytest.raises(ValueError, match="at least 1"):
        plan_slots(gpus_per_node=0, visible_gpus=[], parallelism=-1, cpus_per_task=None)


@pytest.mark.slow
def test_a_job_of_two_tasks_trains_one_run_like_one_process(tmp_path, data_dir,
                                                            ddp_reference):
    """tasks_per_node=2: DDP (gloo) through submitit's local environment, as on SLURM."""
    runs = tmp_path / "runs"
    out = finish(start_cli(["-m", "launcher=submitit_local", *DDP_ARGS,
                            "hydra.launcher.tasks_per_node=2"], runs, data_dir))
    assert f"1 job(s) at a time (CPU), {max(1, job_cpus() // 2)} CPU(s) each" in out
    [run] = run_dirs(runs)
    assert_matches_one_process(read_metrics(run), ddp_reference)


def test_hydras_own_submitit_launchers_are_warned_about(caplog):
    """`hydra/launcher=submitit_slurm` (Hydra's spelling) runs jobs without c2f's checks,
    skipping, progress and failure report: the sweep says so and names c2f's launcher."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        stock = compose("config", overrides=["hydra/launcher=submitit_slurm"],
                        return_hydra_config=True)
        ours = compose("config", overrides=["launcher=slurm"], return_hydra_config=True)
    callbacks = [instantiate(c) for c in stock.hydra.callbacks.values()]
    with caplog.at_level("WARNING"):
        for callback in callbacks:
            callback.on_multirun_start(config=ours)
        assert not caplog.records
        for callback in callbacks:
            callback.on_multirun_start(config=stock)
    assert "hydra-submitit-launcher's SlurmLauncher itself" in caplog.text
    assert "c2f's is `launcher=slurm`" in caplog.text
    assert OmegaConf.select(ours, "hydra.launcher._target_").startswith("hydra_plugins.c2f")
