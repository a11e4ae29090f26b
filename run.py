"""c2f's one entry point: Hydra config -> typed spec -> phase plan -> training -> summary.

    python run.py                                   # baseline on the built-in dataset
    python run.py compression=fshift schedule=2phase schedule.c=4
    python run.py -m compression=fshift,pool_avg,patch_pi schedule=2phase,3phase
"""
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from c2f.data.errors import DataError
from c2f.spec import ConfigError, build_spec
from c2f.train.job import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        spec = build_spec(OmegaConf.to_container(cfg, resolve=True))
        summary = run_job(spec, OmegaConf.to_yaml(cfg))
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return None if summary is None else summary["best"]


if __name__ == "__main__":
    main()
