"""Matplotlib figures (PNG and SVG): metric vs cumulative FLOPs and time, savings bars."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from c2f.epochs import defined
from c2f.report.paper import title
from c2f.report.runs import Run
from c2f.report.savings import Cell, fold_epochs, reference
from c2f.report.tables import label, row_order, single_phase, unique_slugs


def _save(fig: plt.Figure, path: Path) -> Path:
    """PNG and SVG next to each other (`path` plus .png, .svg: a name holding a decimal,
    `..._optim.lr_0.0005_10`, keeps it whole); returns the PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    png, svg = path.parent / (path.name + ".png"), path.parent / (path.name + ".svg")
    fig.savefig(png, dpi=110, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return png


def _title(dataset: str, model: str, budget: int) -> str:
    """Figure title."""
    return f"{title(dataset)} · {model} · {budget} epochs"


def curves(runs: list[Run], path: Path) -> Path:
    """Eval metric against cumulative training FLOPs and seconds, one line per setting."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    settings = sorted({(r.method, r.schedule) for r in runs}, key=lambda ms: row_order(*ms))
    colors = {s: plt.cm.tab10(i % 10) for i, s in enumerate(settings)}
    epochs = fold_epochs(runs)  # cross-validated folds: their common epoch
    refs = [ref for r in runs if r.is_baseline and r.finished
            if (ref := reference(r, epochs.get(r.path))) is not None]
    for ax, key, unit, scale in ((axes[0], "flops_cum", "training TFLOPs (cumulative)", 1e12),
                                 (axes[1], "seconds_cum", "training seconds (cumulative)", 1)):
        labelled = set()
        for run in sorted(runs, key=lambda r: (row_order(r.method, r.schedule), r.seed)):
            if not run.records:
                continue
            setting = (run.method, run.schedule)
            xs = [r[key] / scale for r in run.records]
            ys = [100 * r["value"] if defined(r["value"]) else math.nan for r in run.records]
            style = ({"color": "black", "ls": "--"} if run.is_baseline
                     else {"color": colors[setting]})
            name = label(*setting) if setting not in labelled else None
            labelled.add(setting)
            starts = [i for i in range(1, len(run.records))
                      if run.records[i]["phase"] != run.records[i - 1]["phase"]]
            # coarse phases dotted, up to the final phase's first epoch (their metric is a
            # coarse model's, on coarse input: not the run's result); a run not in its final
            # phase yet is dotted throughout
            final = next((i for i, r in enumerate(run.records) if r.get("final_phase", True)),
                         len(run.records))
            if final:
                ax.plot(xs[:final + 1], ys[:final + 1], lw=1.1, alpha=0.7,
                        label=name if final == len(run.records) else None,
                        **{**style, "ls": ":"})
            if final < len(run.records):
                ax.plot(xs[final:], ys[final:], lw=1.4, alpha=0.85, label=name, **style)
            ax.plot([xs[i] for i in starts], [ys[i] for i in starts], ls="none", marker="o",
                    mfc="white", mec=style["color"], ms=6)
            if not run.finished:  # it stopped (or runs) here: not where its training ends
                ax.plot(xs[-1], ys[-1], ls="none", marker="x", ms=7, mew=1.5,
                        color=style["color"])
            if run.average is not None:  # the weight-averaged model, at the cost of its run
                ax.plot(run.average[key] / scale, 100 * run.average["value"], ls="none",
                        marker="*", ms=11, color=style["color"])
        for ref in refs:
            ax.axhline(100 * ref.metric, color="grey", lw=0.6, ls=":")
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"eval {runs[0].metric} (%)")
    unfinished = any(not run.finished and run.records for run in runs)
    axes[0].legend(fontsize=8, title="o = phase start, dotted = coarse phases\n"
                   "* = averaged model, thin : = baseline best"
                   + ("\nx = last epoch of an unfinished run" if unfinished else ""),
                   title_fontsize=7)
    fig.suptitle(_title(runs[0].dataset, runs[0].model, runs[0].budget))
    fig.tight_layout()
    return _save(fig, path)


def bars(cells: list[Cell], path: Path) -> Path:
    """FLOPs and time saved per method (groups) and schedule (bars); hatched, with n/r above,
    where the run never reached the baseline (savings at its best final-phase epoch)."""
    cells = [c for c in cells if not c.status.startswith("baseline") and not single_phase(c)]
    methods = sorted({c.method for c in cells}, key=lambda m: row_order(m, "4-1"))
    schedules = sorted({c.schedule for c in cells}, key=lambda s: row_order("fshift", s))
    width = 0.8 / max(len(schedules), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, field, heading in ((axes[0], "flops_save", "training FLOPs saved (%)"),
                               (axes[1], "time_save", "training time saved (%)")):
        shown: set[str] = set()
        for j, schedule in enumerate(schedules):
            for i, method in enumerate(methods):
                cell = next((c for c in cells if (c.method, c.schedule) == (method, schedule)),
                            None)
                if cell is None:
                    continue
                x = i + (j - (len(schedules) - 1) / 2) * width
                stat = getattr(cell, field)
                if stat is None:
                    ax.text(x, 0.03, "–", transform=ax.get_xaxis_transform(), ha="center",
                            fontsize=8)
                    continue
                missed = cell.status.startswith("not reached")
                ax.bar(x, 100 * stat.mean, width, yerr=100 * stat.std if stat.n > 1 else None,
                       color=plt.cm.tab10(j % 10), hatch="//" if missed else None,
                       alpha=0.55 if missed else 1.0,
                       label=None if schedule in shown else schedule.replace("-", "→"))
                if missed or "/" in cell.status:  # not reached, or by some seeds: "1/2"
                    ax.text(x, 100 * stat.mean, "n/r" if missed else cell.status.split()[0],
                            ha="center", va="bottom", fontsize=7)
                shown.add(schedule)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_xticks(range(len(methods)), [label(m, "4-1").rsplit(" ", 1)[0] for m in methods])
        ax.set_title(heading, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # no bar at all without a baseline
        axes[0].legend(title="schedule", fontsize=8)
    first = cells[0] if cells else None
    if first:
        fig.suptitle(_title(first.dataset, first.model, first.budget))
    fig.tight_layout()
    return _save(fig, path)


def plot_all(runs: list[Run], cells: list[Cell], folder: Path) -> list[Path]:
    """Every figure, per dataset, model and budget, each in a file of its own, where there is
    something to draw (a run with an epoch; a run's savings); returns the PNG paths."""
    images = []
    groups = sorted({(r.dataset, r.model, r.budget) for r in runs if r.records})
    names = unique_slugs([f"{dataset}_{model}_{budget}" for dataset, model, budget in groups])
    for dataset, model, budget in groups:
        name = names[f"{dataset}_{model}_{budget}"]
        group = [r for r in runs if (r.dataset, r.model, r.budget) == (dataset, model, budget)]
        images.append(curves(group, folder / f"curves_{name}"))
        mine = [c for c in cells if (c.dataset, c.model, c.budget) == (dataset, model, budget)]
        if any(not c.status.startswith("baseline") and not single_phase(c)
               and (c.flops_save or c.time_save) for c in mine):
            images.append(bars(mine, folder / f"savings_{name}"))
    return images
