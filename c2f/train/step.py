"""One training step's forward and backward over a loaded batch, in micro-batches when
`trainer.micro_batch` asks: gradient accumulation, for a GPU too small for the recipe's batch
(HTS-AT's 128 clips, AST-Base's 12 at 1024 frames on a small card). The optimizer then steps
once per batch (c2f/train/precision.py `apply`), on the summed gradients.

Each micro-batch's loss is weighted by its share of the batch's examples, so the gradient is
the whole batch's: equal to float rounding for models whose rows never meet (AST). Batch norm
normalizes over a micro-batch, and in-model mixup pairs clips within one (PANNs' adjacent
pairs are never split; HTS-AT's flipped partners are the micro-batch's), as on one of several
GPUs without synced statistics. Under DDP the gradients are all-reduced once, with the last
micro-batch (`no_sync` before it).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from c2f.models.mixup import BatchMix
from c2f.train.distributed import World, all_sum
from c2f.train.precision import Precision


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; the message says where and what to change."""

    def __init__(self, where: dict):
        self.where = where
        super().__init__(
            f"the training loss became {where['loss']} at phase {where['phase']} (C = "
            f"{where['C']}), epoch {where['epoch']}, step {where['step']} of the phase; the run "
            "stopped there and keeps its last good checkpoint. Relaunching the same config "
            "would repeat it: lower optim.lr, set optim.grad_clip, or train in "
            "trainer.precision=bf16 or fp32 instead of fp16")


def check_finite(first_bad: torch.Tensor, loss: torch.Tensor, phase, epoch: int,
                 world: World) -> None:
    """Stop the run at a non-finite loss (on every rank: the flag is summed). `first_bad`: the
    phase's first step whose loss was not finite, or -1; `loss`: the latest loss, or the
    epoch's sum, to tell NaN from infinity."""
    found = int(first_bad)
    if all_sum([1 if found >= 0 else 0], world)[0] == 0:
        return
    loss = "NaN" if bool(torch.isnan(loss)) else "infinite" if bool(torch.isinf(loss)) \
        else "NaN or infinite"
    raise Diverged({"phase": phase.index, "C": phase.c, "epoch": epoch + 1,
                    "step": max(found, 0) + 1, "loss": loss})


class OutOfMemory(RuntimeError):
    """The device ran out of memory in a step; the message says where and what to change."""

    def __init__(self, device: str, where: str, phase: int, c: int, batch: int,
                 micro: int | None, epochs_done: int):
        part = min(batch, micro or batch)
        if where == "evaluation":
            fix = ("lower dataset.eval_batch_size (evaluation's batch; a new run id) or "
                   "free the device")
        elif part > 1:
            fix = (f"relaunch with trainer.micro_batch={part // 2} (the same run: it resumes; "
                   "gradients of the parts add up to the batch's)")
        else:
            fix = "even one example per forward does not fit: a smaller model or input, or " \
                  "a device with more memory"
        if where == "training" and part > 1 and device == "cuda":
            fix += (", or trainer.precision=bf16 if the run is in fp32. With CUDA graphs (on by "
                    "default) a captured step keeps its memory while a short batch (an epoch's "
                    "last) runs eagerly beside it: trainer.cuda_graphs=false may fit the batch "
                    "as it is")
        super().__init__(
            f"{device} ran out of memory in {where} at phase {phase} (C = {c}), with "
            f"{batch} examples per step on this process"
            + (f" in parts of {micro}" if micro and micro < batch else "")
            + f"; the run keeps its checkpoint ({epochs_done} epoch(s) done): {fix}")


def micro_slices(rows: int, micro_rows: int | None) -> list[slice]:
    """The batch's rows in parts of at most `micro_rows` (None: one part)."""
    if not micro_rows or micro_rows >= rows:
        return [slice(0, rows)]
    return [slice(start, min(start + micro_rows, rows)) for start in range(0, rows, micro_rows)]


def _no_sync(model: torch.nn.Module, last: bool):
    """DDP's `no_sync` for every micro-batch but the last (the model may be compiled)."""
    inner = getattr(model, "_orig_mod", model)
    if last or not isinstance(inner, DistributedDataParallel):
        return contextlib.nullcontext()
    return inner.no_sync()


def forward_backward(model: torch.nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                     mix: BatchMix | None, loss_fn: Callable, precision: Precision,
                     micro_rows: int | None) -> torch.Tensor:
    """Gradients of the batch's loss into the parameters' .grad (zeroed by the caller); the
    batch's loss, detached. One part: exactly the plain step (no weighting)."""
    parts = micro_slices(inputs.shape[0], micro_rows)
    outputs = [part.stop - part.start if mix is None else mix.output_rows(part.stop - part.start)
               for part in parts]
    total = sum(outputs)
    batch_loss = None
    for k, (part, rows) in enumerate(zip(parts, outputs)):
        part_mix = None if mix is None else mix.part(part.start, part.stop)
        with _no_sync(model, last=k == len(parts) - 1):
            with precision.autocast():
                logits = model(inputs[part]) if part_mix is None else \
                    model(inputs[part], mix=part_mix)
            y = target[part]
            loss = loss_fn(logits.float(), y if part_mix is None else part_mix.targets(y))
            if len(parts) > 1:
                loss = loss * (rows / total)
            precision.backward(loss)
        batch_loss = loss.detach() if batch_loss is None else batch_loss + loss.detach()
    return batch_loss


def split_note(model: torch.nn.Module, batch: int, micro: int, mixes: bool) -> str:
    """What micro-batches of `micro` examples change for this model, printed once a run."""
    parts = len(micro_slices(batch, micro))
    note = (f"trainer.micro_batch={micro}: each step's {batch} examples run in {parts} parts; "
            "their gradients add up to the batch's")
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
             torch.nn.SyncBatchNorm)
    coupled = (["batch norm normalizes over a part"]
               if any(isinstance(m, norms) for m in model.modules()) else []) + \
        (["in-model mixup pairs clips within a part"] if mixes else [])
    if coupled:
        note += (f", but {' and '.join(coupled)}, as on one of {parts} GPUs without synced "
                 "statistics (not the same run as whole batches)")
    return note
