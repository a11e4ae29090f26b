"""Training FLOPs with torch's FlopCounterMode: forward + backward of one batch.

Convention (the paper's, and that of the design note's 0.234 / 0.477 ratios): a backward
pass costs twice its forward, attention included. Two gaps in FlopCounterMode are closed here:
- it has no formula for the CPU flash-attention kernel that `scaled_dot_product_attention`
  uses on CPU, so attention's N^2 terms would be missing from CPU counts;
- its fused-attention backward formulas count the kernels' recomputation of the scores
  (2.5x forward), while the meta device (used for the plan's predictions) runs the unfused
  math path (2x). We count 2x everywhere, so predicted and counted FLOPs agree on any device.
"""
from __future__ import annotations

import torch
import torch.utils.flop_counter as fc
from torch.utils.flop_counter import FlopCounterMode

from c2f.data.dataset import collate_skipping
from c2f.models.mixup import draw_batch_mix
from c2f.spec import BatchMixup

aten = torch.ops.aten


def _attention_forward(query_shape, key_shape, value_shape, *args, out_shape=None,
                       **kwargs) -> int:
    return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *args,
                        out_shape=None, **kwargs) -> int:
    return 2 * fc.sdpa_flop_count(query_shape, key_shape, value_shape)


# Set (not `register_flop_formula`, which refuses to replace torch's own entries), wrapped the
# way it wraps formulas so that they receive shapes.
fc.flop_registry[aten._scaled_dot_product_flash_attention_for_cpu] = fc.shape_wrapper(
    _attention_forward)
for _backward in (aten._scaled_dot_product_flash_attention_for_cpu_backward,
                  aten._scaled_dot_product_flash_attention_backward,
                  aten._scaled_dot_product_efficient_attention_backward,
                  aten._scaled_dot_product_cudnn_attention_backward):
    fc.flop_registry[_backward] = fc.shape_wrapper(_attention_backward)


def training_flops(model: torch.nn.Module, batch: torch.Tensor, **forward) -> int:
    """FLOPs of forward + backward on `batch` (gradients are zeroed again afterwards);
    `forward`: keyword arguments of the model's forward (an in-model mixup's `mix`)."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(batch, **forward).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def predicted_flops_per_sample(model_factory, frames: int, mel: int,
                               mixup: BatchMixup | None = None) -> int:
    """Training FLOPs per loaded clip, counted on the meta device (no memory, no compute):
    one clip, or with an in-model mixup two clips and their mixing (adjacent pairs train one
    example per two clips). A model the meta device cannot run (its forward reads a value:
    `.item()`, a shape taken from data) is counted on a batch of zeros on the CPU instead, as
    the training loop counts every model on a real batch."""
    try:
        return _flops_on("meta", model_factory, frames, mel, mixup)
    except Exception as err:
        if not meta_limit(err):
            raise
    return _flops_on("cpu", model_factory, frames, mel, mixup)


def _flops_on(device: str, model_factory, frames: int, mel: int,
              mixup: BatchMixup | None) -> int:
    rows = 1 if mixup is None else 2
    with torch.device(device):
        model = model_factory()
        batch = torch.zeros(rows, frames, mel)
    if mixup is None:
        return training_flops(model, batch)
    return training_flops(model, batch, mix=draw_batch_mix(mixup, rows, 0)) // rows


# torch's wording when an operation needs values the meta device lacks
META_WORDS = ("meta tensor", "device meta", "device='meta'", "on meta", "meta device",
              "'meta'")


def meta_limit(err: Exception) -> bool:
    """An operation the meta device cannot run (a value read, `.item()`, an operator without
    a meta kernel, `nonzero`), not a fault of the model: torch's errors say "meta". A plain
    NotImplementedError (an unwritten forward) is the model's own."""
    text = str(err).lower()
    return any(word in text for word in META_WORDS) or (
        isinstance(err, NotImplementedError) and "meta" in text)


def batch_flops_per_sample(model, data, mix_for) -> int:
    """Training FLOPs per sample of `model` on one real batch of its phase (PhaseData `data`),
    with `mix_for(rows)`'s in-model mixup (the loop counts these; not timed)."""
    dataset = data.train_set
    batch = collate_skipping([dataset.item(i) for i in range(min(len(dataset), 4))])
    if batch["size"] == 0:
        raise RuntimeError("the first training clips are all bad; cannot count FLOPs")
    inputs = data.inputs(batch, train=True, cached=False)  # tables fill in a timed epoch
    mix = mix_for(batch["size"])
    return training_flops(model, inputs, **({} if mix is None else {"mix": mix})) // batch["size"]
