"""PANNs' and HTS-AT's in-model SpecAugmentation (torchlibrosa.augmentation: SpecAugmentation,
made of two DropStripes)."""
from __future__ import annotations

import torch


def stripe_mask(x: torch.Tensor, dim: int, width: int, stripes: int) -> torch.Tensor:
    """Where torchlibrosa's DropStripes zeroes `x`: per example, `stripes` bands along `dim`,
    each of a width d drawn uniformly from 0 .. `width` - 1 and a start drawn uniformly from
    0 .. size - d - 1 (torchlibrosa `DropStripes.transform_slice`: `randint(0, drop_width)`,
    then `randint(0, total_width - distance)`); a bool mask that broadcasts against `x`.

    The draws come from the generator of `x`'s device, for the whole batch at once: a CUDA
    graph advances that generator at every replay (a draw on the host would be frozen by the
    capture), and a batch costs a few kernels instead of two per stripe."""
    total = x.shape[dim]
    width = min(width, total)  # a stripe never outgrows a short input
    rows = x.shape[0]
    distance = torch.randint(0, max(1, width), (rows, stripes, 1), device=x.device)
    # uniform over 0 .. total - distance - 1 (>= 0: distance < width <= total)
    start = (torch.rand(rows, stripes, 1, device=x.device) * (total - distance)).long()
    position = torch.arange(total, device=x.device)
    dropped = ((position >= start) & (position < start + distance)).any(1)  # [rows, total]
    shape = [rows] + [1] * (x.dim() - 1)
    shape[dim] = total
    return dropped.view(shape)


def spec_augmentation(x: torch.Tensor, time_width: int, freq_width: int,
                      stripes: int = 2) -> torch.Tensor:
    """torchlibrosa's SpecAugmentation on [B, 1, time, mel] as PANNs and HTS-AT configure it
    (models.py Cnn14 / htsat.py: `time_stripes_num=2, freq_stripes_num=2`): time stripes of
    up to `time_width` frames, then frequency stripes of up to `freq_width` bins, zeroed in one
    pass (a new tensor)."""
    mask = stripe_mask(x, 2, time_width, stripes) | stripe_mask(x, 3, freq_width, stripes)
    return x.masked_fill(mask, 0)
