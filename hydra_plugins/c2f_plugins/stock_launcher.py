"""A warning when a sweep runs on hydra-submitit-launcher's own launchers
(`hydra/launcher=submitit_slurm`, Hydra's usual spelling) instead of c2f's (`launcher=slurm`):
theirs start every job without c2f's checks, its skipping of finished runs, its progress and
failure report, and the cluster values in conf/launcher/cluster/local.yaml."""
import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)
STOCK = "hydra_plugins.hydra_submitit_launcher."
OURS = {"SlurmLauncher": "launcher=slurm", "LocalLauncher": "launcher=submitit_local"}


class StockLauncherWarning(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        target = str(config.hydra.launcher.get("_target_", ""))
        if target.startswith(STOCK):
            name = target.rsplit(".", 1)[-1]
            log.warning(f"this sweep runs on hydra-submitit-launcher's {name} itself: every "
                        "job starts without c2f's checks, without skipping finished runs, "
                        "without progress or a failure report, and without "
                        "conf/launcher/cluster/local.yaml; c2f's is "
                        f"`{OURS.get(name, 'launcher=slurm')}` (drop hydra/launcher=...)")
