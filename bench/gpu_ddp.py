"""`make bench-gpu`, section 5: NCCL DDP on 2 processes against 1, when the machine has 2 GPUs.

The same run (AST-Base on the bench's noise clips, schedule=baseline at C = 1 and fshift C = 4,
bf16, 2 epochs) through `run.py` in one process and through `torchrun --nproc_per_node 2`:
samples/s of each run's last epoch from metrics.jsonl (evaluation excluded), their ratio, and
the final training losses (the two see the same batches, so they agree to bf16 rounding).
On CPU (`--device cpu`, gloo) it smoke-tests the section.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _launch(overrides: list[str], runs: Path, processes: int) -> dict:
    """One run.py launch; its last epoch's metrics record."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    done = subprocess.run([*torchrun, str(ROOT / "run.py"), *overrides, f"paths.runs_dir={runs}"],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{processes} process(es) exited {done.returncode}: {last}")
    [metrics] = runs.glob("*/*/metrics.jsonl")
    return [json.loads(line) for line in metrics.read_text().splitlines()][-1]


def ddp_section(report, base: list[str], folder: Path, device: str) -> None:
    """base: the bench's overrides (dataset, model, batch, device)."""
    rows = ["| input | 1 process (samples/s) | 2 processes (samples/s) | speed-up | final train "
            "loss, 1 vs 2 |", "|---|--:|--:|--:|--:|"]
    backend = "NCCL" if device == "cuda" else "gloo"
    for name, shape in (("C=1", ["compression=none"]),
                        ("fshift C=4", ["compression=fshift", "schedule.c=4"])):
        overrides = [*base, *shape, "dataset.epochs=2", "trainer.precision=bf16",
                     "logger=disabled"]
        try:
            one, two = (_launch(overrides, folder / "ddp" / f"{name}-{n}".replace(" ", "_")
                                .replace("=", ""), n) for n in (1, 2))
        except RuntimeError as err:
            report.add(f"## 5. DDP ({backend}, 2 processes)", "", f"Not measured: {err}", "")
            return
        rate1, rate2 = one["samples"] / one["seconds"], two["samples"] / two["seconds"]
        rows.append(f"| {name} | {rate1:.0f} | {rate2:.0f} | {rate2 / rate1:.2f} | "
                    f"{one['train_loss']:.6f} vs {two['train_loss']:.6f} |")
    report.add(f"## 5. DDP ({backend}, 2 processes vs 1, `run.py` through torchrun)", "",
               "The last of 2 epochs of each run, from metrics.jsonl (evaluation excluded); "
               "the global batch is split over the processes.", "", *rows, "")
