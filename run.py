"""c2f's one entry point: Hydra config -> typed spec -> phase plan -> training -> summary.

    python run.py                                   # baseline on the built-in dataset
    python run.py compression=fshift schedule=2phase schedule.c=4
    python run.py -m compression=fshift,pool_avg,patch_pi schedule=2phase,3phase
    python run.py -m -cn table2 launcher=slurm      # a paper table's grid (sweeps/)
"""
import logging
import sys
import traceback

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from c2f.data.errors import DataError
from c2f.models.registry import refuse_unread_overrides
from c2f.prepared import complete_dataset
from c2f.registry import PluginError
from c2f.spec import ConfigError, build_spec
from c2f.track import RunHeld
from c2f.train.failures import SharedMemoryExhausted
from c2f.train.job import run_job
from c2f.train.step import Diverged, OutOfMemory
from c2f.train.stopping import Interrupted

log = logging.getLogger("c2f")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        spec = build_spec(OmegaConf.to_container(complete_dataset(cfg), resolve=True))
        refuse_unread_overrides(spec.model.arch, HydraConfig.get().overrides.task)
        summary = run_job(spec, OmegaConf.to_yaml(cfg))
    except Exception as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # into the job's log; the launcher lists failed (and held) jobs once all have ended
            if isinstance(err, RunHeld):  # skipped, not failed: no traceback
                log.warning(f"job skipped: {err}")
            else:
                log.exception(f"job failed: {err}")
            raise
        if isinstance(err, Diverged):
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(3) from None
        if not isinstance(err, (ConfigError, DataError, RunHeld, OutOfMemory,
                                SharedMemoryExhausted, PluginError)):
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return None if summary is None else summary["best"]


def _hint_overrides() -> None:
    """After Hydra refused the command line: the closest key of each override naming none."""
    try:
        from c2f.override_hints import unknown_override_hints

        hints = unknown_override_hints(sys.argv[1:])
    except Exception:  # a hint is a help: never a second error over the first
        return
    for hint in hints:
        print(f"hint: {hint}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as stop:  # Ctrl-C: one line, not the frames it stopped in
        said = str(stop) or "interrupted before training started: nothing to save"
        # a submitit sweep's jobs may go on: its launcher says which (SweepInterrupted)
        if ("-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]) and \
                not getattr(stop, "says_what_the_jobs_do", False):
            said += "; the sweep stopped: launching it again trains only what is left"
        print(said, file=sys.stderr)
        raise SystemExit(getattr(stop, "EXIT_CODE", Interrupted.EXIT_CODE)) from None
    except SystemExit as stop:
        if stop.code == 1:  # Hydra's exit on a config it could not compose (among others)
            _hint_overrides()
        raise
    except Exception:  # HYDRA_FULL_ERROR=1: Hydra lets its error through
        traceback.print_exc()
        _hint_overrides()
        raise SystemExit(1) from None
