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
    example per two clips)."""
    rows = 1 if mixup is None else 2
    with torch.device("meta"):
        model = model_factory()
        batch = torch.empty(rows, frames, mel)
    if mixup is None:
        return training_flops(model, batch)
    return training_flops(model, batch, mix=draw_batch_mix(mixup, rows, 0)) // rows
