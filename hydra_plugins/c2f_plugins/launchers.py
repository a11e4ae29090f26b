"""Launchers for c2f sweeps: every job runs to its end, failures are listed with their logs.

Before any job starts, every job's config is checked (its typed spec and phase plan): a sweep
with an impossible config, or without a required file, stops there and names its jobs. Jobs
whose runs finished, diverged before or are trained by another process now are listed and not
started (settled.py: a relaunched sweep starts only what is left, on SLURM without queueing the
rest).

- `LocalLauncher`: Hydra's sequential launcher plus the failure report.
- `Sweeper`: Hydra's basic sweeper without its own composition of every job to check it (these
  launchers compose each job once, side by side in forked processes for a big sweep
  (compose.py), and check more), which took half of a dry run of 44 jobs.
- `SlurmLauncher` / `SubmititLocalLauncher`: hydra-submitit-launcher, but each job's config is
  composed when the sweep is launched (edits made while jobs wait do not leak into them), a job
  that dies (killed, out of memory, out of requeues) is reported instead of aborting the wait
  for its siblings, and `snapshot=true` runs the jobs from a copy of the code.

How a sweep stands while it runs: sweep_progress.py; how it ended: outcome.py.
"""

import copy
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra_plugins.hydra_submitit_launcher.config import (
    BaseQueueConf,
    LocalQueueConf,
    SlurmQueueConf,
)
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.c2f_plugins.compose import compose_jobs
from hydra_plugins.c2f_plugins.data_check import SweepConfigError, check_data, refuse
from hydra_plugins.c2f_plugins.environ import (
    code_environment,
    shadowed_by_launch_folder,
    snapshot_code,
)
from hydra_plugins.c2f_plugins.local_slots import plan_slots, submit_in_slots
from hydra_plugins.c2f_plugins.outcome import (
    finished_note,
    report_failures,
    scheduler_state,
    skip_held,
)
from hydra_plugins.c2f_plugins.preemption import handle_preemption_once, warning_grace_s
from hydra_plugins.c2f_plugins.settled import (
    dry_run,
    dry_run_total,
    duplicate_jobs,
    same_return,
    settled_jobs,
    varying_overrides,
)
from hydra_plugins.c2f_plugins.sweep_progress import wait_reporting

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


def preflight(configs: Sequence[DictConfig], job_overrides: Sequence[Sequence[str]]) -> list:
    """Build every job's spec and plan before any job starts; raise naming the jobs that
    cannot run, one paragraph per distinct reason. Returns the specs."""
    from c2f.models.registry import refuse_unread_overrides
    from c2f.plan import build_plan
    from c2f.prepared import complete_dataset
    from c2f.registry import PluginError
    from c2f.spec import ConfigError, build_spec

    problems: dict[str, list[str]] = {}
    specs = []
    varying = varying_overrides(job_overrides)
    for num, config in enumerate(configs):
        task = copy.deepcopy(config)
        with open_dict(task):
            task.pop("hydra", None)
        try:
            specs.append(build_spec(OmegaConf.to_container(complete_dataset(task), resolve=True)))
            refuse_unread_overrides(specs[-1].model.arch, job_overrides[num])
            build_plan(specs[-1])
        except (ConfigError, OmegaConfBaseException) as err:
            problems.setdefault(str(err), []).append(f"#{num} {varying[num]}".strip())
        except PluginError as err:  # every job's: c2f cannot load its methods and models
            raise SweepConfigError(f"{err}; nothing was started") from None
    refuse(problems, len(configs))
    return specs


class LocalLauncher(BasicLauncher):
    """Hydra's sequential launcher (its `launch`, with each job's config composed once, not
    twice); checks every job first, lists the failed jobs at the end."""

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        configs = compose_jobs(self.hydra_context.config_loader, self.config, job_overrides)
        specs = preflight(configs, job_overrides)
        settled = settled_jobs(specs, job_overrides)
        same = duplicate_jobs(specs, job_overrides, settled)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        todo = len(job_overrides) - len(settled) - len(same)
        dry = [i for i, spec in enumerate(specs) if spec.trainer.dry_run
               and i not in settled and i not in same]
        log.info(f"dry run: {todo} job(s) planned here, none trained" if dry and len(dry) == todo
                 else f"Launching {todo - len(dry)} jobs locally")
        returns, planned = [], []
        for idx, (overrides, config) in enumerate(zip(job_overrides, configs),
                                                  start=initial_job_idx):
            if idx - initial_job_idx in settled:
                returns.append(settled[idx - initial_job_idx])
                continue
            if idx - initial_job_idx in same:
                returns.append(same_return(returns[same[idx - initial_job_idx]], overrides))
                continue
            if specs[idx - initial_job_idx].trainer.dry_run:
                returns.append(dry_run(specs[idx - initial_job_idx], overrides, idx))
                planned.append(returns[-1])
                continue
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            with open_dict(config):
                config.hydra.job.id = idx
                config.hydra.job.num = idx
            returns.append(run_job(hydra_context=self.hydra_context,
                                   task_function=self.task_function, config=config,
                                   job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if planned:
            log.info(f"dry run: {dry_run_total(planned)}")
        report_failures(returns, [()] * len(returns))
        if todo > len(planned):
            finished_note(specs, returns)
        return skip_held(returns)


class _SubmititLauncher(BaseSubmititLauncher):
    def __init__(self, snapshot: bool = False, **params: Any) -> None:
        super().__init__(**params)
        self.snapshot = snapshot

    def __call__(self, sweep_config: DictConfig, singleton_state: dict) -> JobReturn:
        """Runs on the node; a requeue calls it again with the same (untouched) arguments."""
        import submitit

        Singleton.set_state(singleton_state)
        setup_globals()
        handle_preemption_once(warning_grace_s(self.params.get("signal_delay_s")))
        sweep_config = copy.deepcopy(sweep_config)  # run_job makes it read-only
        with open_dict(sweep_config.hydra.job):
            sweep_config.hydra.job.id = submitit.JobEnvironment().job_id
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                       config=sweep_config, job_dir_key="hydra.sweep.dir",
                       job_subdir_key="hydra.sweep.subdir")

    def _executor(self) -> Any:
        import submitit

        params = dict(self.params)
        folder = params.pop("submitit_folder")
        init = {f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")
                } if "max_num_timeout" in params else {}
        executor = submitit.AutoExecutor(folder=folder, cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v
                                      for k, v in params.items()})
        return executor

    def _submit(self, executor: Any, configs: list[DictConfig]) -> list[Any]:
        """Every job at once (SLURM queues them: one job array)."""
        return executor.map_array(self, configs, [Singleton.get_state()] * len(configs))

    def _check_time(self) -> None:
        """A time limit a job can run under: positive, and longer than the warning SLURM
        sends before it (`signal_delay_s`: the job checkpoints and is requeued on it)."""
        minutes, delay = self.params.get("timeout_min"), self.params.get("signal_delay_s")
        if minutes is not None and minutes <= 0:
            raise SweepConfigError(f"hydra.launcher.timeout_min={minutes}: a job's time limit "
                                   "in minutes must be above 0; nothing was started")
        if minutes is not None and delay is not None and delay >= 60 * minutes:
            raise SweepConfigError(
                f"hydra.launcher.signal_delay_s={delay} (the warning sent that long before the "
                f"time limit, on which a job checkpoints and is requeued) is not shorter than "
                f"timeout_min={minutes} minute(s): every job would get it as it starts and "
                f"die. Give timeout_min above {delay / 60:g} or a smaller signal_delay_s; "
                "nothing was started")

    def _resources(self) -> str:
        """What each job asks of the cluster: hydra.launcher's resource keys."""
        return ", ".join(f"{key}={self.params.get(key)}" for key in (
            "partition", "account", "qos", "gpus_per_node", "cpus_per_task", "mem_gb",
            "timeout_min"))

    def _code_root(self, sweep_dir: Path) -> Path:
        if not self.snapshot:
            return REPO
        shadowed = shadowed_by_launch_folder(Path.cwd())
        if shadowed:
            raise SweepConfigError(
                f"hydra.launcher.snapshot=true: the jobs would import {', '.join(shadowed)} "
                f"from the launch folder {Path.cwd()}, not from the snapshot (Python "
                f"{sys.version_info.major}.{sys.version_info.minor} puts it first on their "
                "sys.path; PYTHONSAFEPATH, which keeps it off, needs Python 3.11 or later). "
                "Launch from another folder (python /path/to/run.py -m ...) or with Python "
                ">= 3.11; nothing was started")
        code = snapshot_code(REPO, sweep_dir / "code")
        log.info(f"Jobs run the code snapshot in {code}")
        return code

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import UncompletedJobError

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        configs = compose_jobs(self.hydra_context.config_loader, self.config, job_overrides)
        for num, config in enumerate(configs, start=initial_job_idx):
            with open_dict(config.hydra.job):
                config.hydra.job.num = num
        specs = preflight(configs, job_overrides)
        self._check_time()
        settled = settled_jobs(specs, job_overrides)
        same = duplicate_jobs(specs, job_overrides, settled)
        todo = [i for i in range(len(configs)) if i not in settled and i not in same]
        planned = {i: dry_run(specs[i], job_overrides[i], i + initial_job_idx) for i in todo
                   if specs[i].trainer.dry_run}
        if planned:
            log.info(f"dry run: {len(planned)} job(s) planned here, none submitted "
                     f"({self._EXECUTOR} would get {self._resources()}); "
                     f"{dry_run_total(list(planned.values()))}")
        todo = [i for i in todo if i not in planned]
        jobs = {}
        if todo:
            executor = self._executor()  # no SLURM here: said before the data is read
            varying = varying_overrides(job_overrides)
            check_data(specs, todo, [f"#{i + initial_job_idx} {varying[i]}".strip() for i in
                                     range(len(specs))])
            with code_environment(self._code_root(sweep_dir)):
                submitted = self._submit(executor, [configs[i] for i in todo])
            jobs = dict(zip(todo, submitted))
            wait_reporting(jobs)
        returns = []
        for index, overrides in enumerate(job_overrides):
            if index in settled:
                returns.append(settled[index])
                continue
            if index in same:
                returns.append(same_return(returns[same[index]], overrides))
                continue
            if index in planned:
                returns.append(planned[index])
                continue
            try:
                returns.append(jobs[index].results()[0])
            except UncompletedJobError as err:  # died outside Python: killed, OOM, no requeue left
                ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
                ret.return_value = err
                returns.append(ret)
        indices = range(len(returns))
        report_failures(returns, [(jobs[i].paths.stderr, jobs[i].paths.stdout) if i in jobs
                                  else () for i in indices],
                        [scheduler_state(jobs[i]) if i in jobs else "" for i in indices])
        if jobs:
            finished_note(specs, returns)
        return skip_held(returns)


class SlurmLauncher(_SubmititLauncher):
    """One job array on SLURM; where there is no SLURM, or sbatch refuses the array, the sweep
    stops with what to change (nothing was submitted)."""

    _EXECUTOR = "slurm"

    def _executor(self) -> Any:
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise SweepConfigError(
                f"launcher=slurm: no SLURM on this machine ({' and '.join(missing)} not on "
                "PATH); launch the sweep from a login node of your cluster, or run it here with "
                "launcher=submitit_local (jobs side by side) or launcher=local; nothing was "
                "started")
        return super()._executor()

    def _submit(self, executor: Any, configs: list[DictConfig]) -> list[Any]:
        from submitit.core.utils import FailedJobError

        try:
            return super()._submit(executor, configs)
        except FailedJobError as err:
            raise SweepConfigError(
                f"sbatch refused the sweep's job array: {str(err).strip()}\nNothing was "
                "started. The job's resources are hydra.launcher's keys (your cluster's in "
                f"conf/launcher/cluster/local.yaml, or on the command line), now: "
                f"{self._resources()}") from None


class SubmititLocalLauncher(_SubmititLauncher):
    """Jobs side by side on this machine, each in a slot of its own GPUs (local_slots.py)."""

    _EXECUTOR = "local"

    def __init__(self, parallelism: int | None = None,
                 visible_gpus: Sequence[int] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.parallelism, self.visible_gpus = parallelism, visible_gpus

    def _executor(self) -> Any:
        """submitit's LocalExecutor itself: it takes the GPU ids of each job (`visible_gpus`),
        which its AutoExecutor does not pass on."""
        import submitit

        params = {k: v for k, v in self.params.items() if v is not None}
        folder = params.pop("submitit_folder")
        init = {"max_num_timeout": params.pop("max_num_timeout")
                } if "max_num_timeout" in params else {}
        executor = submitit.LocalExecutor(folder=folder, **init)
        executor.update_parameters(**params)
        return executor

    def _submit(self, executor: Any, configs: list[DictConfig]) -> list[Any]:
        try:
            slots = plan_slots(
                gpus_per_node=self.params.get("gpus_per_node"), visible_gpus=self.visible_gpus,
                parallelism=self.parallelism, cpus_per_task=self.params.get("cpus_per_task"),
                tasks_per_node=self.params.get("tasks_per_node", 1))
        except ValueError as err:
            raise SweepConfigError(f"{err}; nothing was started") from None
        log.info(f"Local sweep: {slots.describe()}")
        state = Singleton.get_state()
        return submit_in_slots(executor, lambda config: executor.submit(self, config, state),
                               configs, slots)


class Sweeper(BasicSweeper):
    """Hydra's basic sweeper; a batch is checked by the launcher (`preflight`), not composed
    one extra time here."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        return None


@dataclass
class SweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.c2f_plugins.launchers.Sweeper"


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.c2f_plugins.launchers.LocalLauncher"


@dataclass
class SlurmLauncherConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.c2f_plugins.launchers.SlurmLauncher"
    snapshot: bool = False


@dataclass
class SubmititLocalLauncherConf(LocalQueueConf):
    _target_: str = "hydra_plugins.c2f_plugins.launchers.SubmititLocalLauncher"
    snapshot: bool = False
    parallelism: int | None = None  # jobs at a time; None: one per slot of GPUs (or CPUs)
    visible_gpus: list[int] | None = None  # the GPUs to share out; None: all visible


for _name, _node in (("c2f_local", LocalLauncherConf), ("c2f_slurm", SlurmLauncherConf),
                     ("c2f_submitit_local", SubmititLocalLauncherConf)):
    ConfigStore.instance().store(group="hydra/launcher", name=_name, node=_node, provider="c2f")
ConfigStore.instance().store(group="hydra/sweeper", name="c2f", node=SweeperConf, provider="c2f")
