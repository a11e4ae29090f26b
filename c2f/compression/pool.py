"""Pool: average or max pooling, kernel = stride = (1, C) over the fbank, before tokenization."""
import torch
import torch.nn.functional as F

from c2f.compression import register
from c2f.compression.base import BaseInput, Compression, PhaseInput, divide_exactly


class _TimePool(Compression):
    pool = None  # set by the registered subclasses

    def phase_input(self, base: BaseInput, c: int) -> PhaseInput:
        frames = divide_exactly(base.target_length, c, self.name)
        return PhaseInput(base.frame_shift_ms, base.target_length, frames, base.patch,
                          base.time_mask // c)  # its duration kept (c2f's; paper silent)

    def transform(self, fbank: torch.Tensor, c: int) -> torch.Tensor:
        if c == 1:
            return fbank
        lead = fbank.shape[:-2]
        frames, mel = fbank.shape[-2:]
        by_mel = fbank.reshape(-1, frames, mel).transpose(1, 2)  # [N, mel, frames]
        pooled = self.pool(by_mel, kernel_size=c, stride=c)
        return pooled.transpose(1, 2).reshape(*lead, frames // c, mel)


@register("pool_avg")
class AvgPool(_TimePool):
    title = "Avg Pool"  # the paper's name
    pool = staticmethod(F.avg_pool1d)


@register("pool_max")
class MaxPool(_TimePool):
    title = "Max Pool"
    pool = staticmethod(F.max_pool1d)
