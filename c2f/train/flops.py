"""Training FLOPs with torch's FlopCounterMode: forward + backward of one real batch.

FlopCounterMode has no formula for the CPU flash-attention kernel that
`scaled_dot_product_attention` uses on CPU; without one, attention's N^2 terms would be
silently missing from CPU counts. We register the same formulas torch uses for the GPU kernels.
"""
from __future__ import annotations

from unittest import mock

import torch
import torch.nn.functional as F
import torch.utils.flop_counter as fc
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

aten = torch.ops.aten


def _register_cpu_attention() -> None:
    forward = aten._scaled_dot_product_flash_attention_for_cpu
    if forward in fc.flop_registry:
        return

    @register_flop_formula(forward)
    def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args,
                           out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_register_cpu_attention()


def training_flops(model: torch.nn.Module, batch: torch.Tensor) -> int:
    """FLOPs of forward + backward on `batch` (gradients are zeroed again afterwards)."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(batch).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                     scale=None, **kwargs):
    """The fused kernel real runs use, so meta counts match real counts (meta falls back to
    the unfused math path, whose backward has one matmul fewer)."""
    if attn_mask is not None or kwargs:
        return _SDPA(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kwargs)
    return aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, scale=scale)[0]


_SDPA = F.scaled_dot_product_attention


def predicted_flops_per_sample(model_factory, frames: int, mel: int) -> int:
    """Training FLOPs of one sample, counted on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        model = model_factory()
        batch = torch.empty(1, frames, mel)
    with mock.patch.object(F, "scaled_dot_product_attention", _fused_attention):
        return training_flops(model, batch)
