"""PANNs' and HTS-AT's in-model SpecAugmentation (torchlibrosa.augmentation.DropStripes)."""
from __future__ import annotations

import torch


def drop_stripes(x: torch.Tensor, dim: int, width: int, stripes: int) -> torch.Tensor:
    """torchlibrosa's DropStripes: per example, `stripes` bands of a random width < `width`
    along `dim` set to zero (in place; random draws from torch's CPU generator, which c2f
    seeds per epoch)."""
    total = x.shape[dim]
    width = min(width, total)  # a stripe never outgrows a short input
    for n in range(x.shape[0]):
        for _ in range(stripes):
            distance = int(torch.randint(0, max(1, width), ()))
            start = int(torch.randint(0, max(1, total - distance), ()))
            x[n].narrow(dim - 1, start, distance).zero_()
    return x
