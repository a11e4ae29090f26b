"""Publish the report's tables and plots to W&B (online, or offline for `wandb sync`)."""
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
    if os.environ.get("WANDB_API_KEY"):
        return None
    try:  # without a key in ~/.netrc, wandb.Api raises (0.31) or gives None (older)
        key = wandb.Api(timeout=10).api_key
    except Exception:  # noqa: BLE001 - any failure to find a key means offline
        key = None
    return None if key else "no W&B API key: `wandb login` or WANDB_API_KEY"


def headline(outcome: Outcome) -> dict:
    """The numbers one run's W&B summary carries under report/."""
    return {f"report/{k}": v for k, v in {
        "budget_status": outcome.status, "budget_epoch": outcome.epoch,
        "budget_metric": outcome.metric, "flops_save": outcome.flops_save,
        "time_save": outcome.time_save, "best": outcome.best, "best_diff": outcome.best_diff,
        "baseline_metric": outcome.ref.metric if outcome.ref else None}.items() if v is not None}


def publish(tables: list, images: list[Path], outcomes: list[Outcome], project: str,
            out: Path) -> Path | None:
    """Log the tables (one W&B Table per paper table, keyed by its file name) and the plots
    as one W&B run of job type `report`. Online, each run's summary also gets its headline
    savings; offline, the run is written under `out`/wandb for `wandb sync` to upload later.
    Returns the run's local folder; None (said so) when W&B failed."""
    reason = online()
    import wandb

    try:
        with wandb.init(project=project, job_type="report", name="c2f-report",
                        mode="offline" if reason else "online", dir=str(out),
                        settings=wandb.Settings(console="off", silent=True)) as run:
            run.log({f"tables/{table.slug}": wandb.Table(columns=table.header, data=table.rows)
                     for table in tables} | {f"plots/{image.stem}": wandb.Image(str(image))
                                              for image in images})
            folder = Path(run.dir).parent
        if reason is None:
            _update_summaries(outcomes, project)
    except Exception as err:  # noqa: BLE001 - publishing is optional; the report is written
        print(f"W&B publish failed ({err}); carrying on")
        return None
    if reason:
        print(f"W&B offline ({reason}): {len(tables)} tables and {len(images)} plots written to "
              f"{folder}; `wandb sync {folder}` uploads them")
    else:
        print(f"W&B: {len(tables)} tables and {len(images)} plots published to project "
              f"{project}")
    return folder


def _update_summaries(outcomes: list[Outcome], project: str) -> None:
    """Each logged run's summary gets its headline savings (report/...)."""
    import wandb

    api = wandb.Api()
    for outcome in outcomes:
        try:
            remote = api.run(f"{api.default_entity}/{project}/{outcome.run.path.name}")
        except wandb.errors.CommError:
            continue  # this run was never logged to W&B
        remote.summary.update(headline(outcome))
