"""Publish the report's tables (and each run's headline savings) to W&B, only when online."""
from __future__ import annotations

import os
from pathlib import Path

from c2f.report.savings import Outcome


def online() -> str | None:
    """None when W&B can be reached with credentials, else the reason it cannot."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return f"WANDB_MODE={mode}"
    try:
        import wandb
    except ImportError:
        return "wandb is not installed"
    if not (os.environ.get("WANDB_API_KEY") or wandb.Api(timeout=10).api_key):
        return "no W&B API key (wandb login)"
    return None


def headline(outcome: Outcome) -> dict:
    """The numbers one run's W&B summary carries under report/."""
    return {f"report/{k}": v for k, v in {
        "budget_status": outcome.status, "budget_epoch": outcome.epoch,
        "budget_metric": outcome.metric, "flops_save": outcome.flops_save,
        "time_save": outcome.time_save, "best": outcome.best, "best_diff": outcome.best_diff,
        "baseline_metric": outcome.ref.metric if outcome.ref else None}.items() if v is not None}


def publish(tables: list, images: list[Path], outcomes: list[Outcome], project: str) -> bool:
    """Log tables and plots as one W&B run, update run summaries; False (said so) when offline."""
    reason = online()
    if reason:
        print(f"W&B offline ({reason}): tables not published; the files above are complete")
        return False
    import wandb

    try:
        with wandb.init(project=project, job_type="report", name="c2f-report") as run:
            for table in tables:
                run.log({table.title: wandb.Table(columns=table.header, data=table.rows)})
            run.log({image.stem: wandb.Image(str(image)) for image in images})
        api = wandb.Api()
        for outcome in outcomes:
            try:
                remote = api.run(f"{api.default_entity}/{project}/{outcome.run.path.name}")
            except wandb.errors.CommError:
                continue  # this run was never logged to W&B
            remote.summary.update(headline(outcome))
    except Exception as err:  # noqa: BLE001 - publishing is optional; the report is written
        print(f"W&B publish failed ({err}); carrying on")
        return False
    print(f"W&B: tables published to project {project}")
    return True
