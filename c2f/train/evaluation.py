"""Evaluation of an epoch's model on the eval set: logits gathered over the ranks and scored
(mAP or accuracy, the loss, the clips skipped)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from c2f.train.distributed import World, all_gather, all_sum
from c2f.train.metrics import evaluate_scores
from c2f.train.phase_data import PhaseData
from c2f.train.precision import Precision


@torch.no_grad()
def evaluate_epoch(model, data: PhaseData, *, world: World, precision: Precision,
                   num_classes: int, multilabel: bool, loss: Callable, note: Callable,
                   before_batch: Callable[[int], None] | None = None) -> dict:
    """Scores of `model` on `data.eval`; `note(batch, "eval")` counts a batch's skipped clips,
    `before_batch(i)` runs before batch i (a stop signal may save the training there)."""
    model.eval()
    logits, targets, skipped = [], [], 0
    for i, batch in enumerate(data.eval):
        if before_batch is not None:
            before_batch(i)
        skipped += note(batch, "eval")
        if batch["size"]:
            inputs = data.inputs(batch, train=False)  # features in float, as training's
            with precision.autocast():
                out = model(inputs)
            # kept on the device: a copy per batch would make the host wait for its forward
            logits.append(out.float())
            targets.append(batch["target"])
    empty = np.zeros((0, num_classes), np.float32)
    logits_np = all_gather(torch.cat(logits).cpu().numpy() if logits else empty, world)
    targets_np = all_gather(torch.cat(targets).numpy() if targets else empty, world)
    if not len(logits_np):
        raise RuntimeError("no usable clip in the eval set")
    scores = evaluate_scores(logits_np, targets_np, multilabel)
    scores["eval_loss"] = float(loss(torch.from_numpy(logits_np), torch.from_numpy(targets_np)))
    scores["eval_skipped"] = int(all_sum([skipped], world)[0])
    return scores
