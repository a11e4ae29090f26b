"""In-model batch mixup (`model.batch_mixup`): log-mels mixed across the batch inside the model,
after its bn0 and SpecAugment, as PANNs and HTS-AT train; AST mixes waveforms instead
(c2f/features.py `mix_waves`, `dataset.mixup`).

- **adjacent** (PANNs: pytorch/pytorch_utils.py `do_mixup`, utils/utilities.py `Mixup`): clip
  2i is mixed with clip 2i+1 with weights (lam, 1 - lam), lam ~ Beta(alpha, alpha) per pair, so
  the model's batch is half the loaded one (PANNs' main.py loads `batch_size * 2` clips) and
  the targets are mixed with the same weights (main.py `do_mixup(batch_data_dict['target'],
  ...)`). A batch of odd size (a short last batch, skipped clips) pairs its last clip with
  itself, which leaves it unmixed; PANNs' own loader never yields one.
- **flipped** (HTS-AT: utils.py `do_mixup`, `get_mix_lambda`): clip i is mixed with clip
  B-1-i, lam ~ Beta(alpha, alpha) per clip; HTS-AT keeps the targets unmixed (sed_model.py
  `training_step`: "AudioSet is not a perfect data so 'adding noise' might be better").

The weights are drawn by the training loop from a seed per step (c2f/train/loop.py), so a run
does not depend on the worker count and resumes bitwise. Under DDP each process mixes its own
share of the batch with weights of its own, as HTS-AT's four GPUs do (and PANNs trains on
one), so such a run is not the same as one process, unlike a run without in-model mixup.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from c2f.spec import BatchMixup


@dataclass(frozen=True)
class BatchMix:
    """One step's mixing: the pairing and its weights (adjacent: one per pair; flipped: one
    per clip). `inputs` mixes what the model mixes; `targets` what the loss compares with."""

    pairing: str
    lam: torch.Tensor
    mix_targets: bool = True

    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        # non_blocking: a blocking copy waits for the GPU to drain the previous step
        return self.lam.to(x.device, x.dtype, non_blocking=True).view(-1, *([1] * (x.dim() - 1)))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] -> the mixed batch: [B, ...] (flipped) or [ceil(B / 2), ...] (adjacent)."""
        lam = self._weights(x)
        if self.pairing == "flipped":
            return x * lam + x.flip(0) * (1 - lam)
        if x.shape[0] % 2:
            x = torch.cat([x, x[-1:]])
        return x[0::2] * lam + x[1::2] * (1 - lam)

    def output_rows(self, rows: int) -> int:
        """Examples the model gives for `rows` loaded clips."""
        return (rows + 1) // 2 if self.pairing == "adjacent" else rows

    def part(self, start: int, stop: int) -> BatchMix:
        """The mixing of loaded rows start..stop (a micro-batch, c2f/train/step.py): adjacent
        pairs keep their weights (start is even); flipped clips keep theirs, their partners
        now within the part."""
        if self.pairing == "adjacent":
            assert start % 2 == 0, "a micro-batch of adjacent pairs starts at an even row"
            return BatchMix(self.pairing, self.lam[start // 2:(stop + 1) // 2], self.mix_targets)
        return BatchMix(self.pairing, self.lam[start:stop], self.mix_targets)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """The targets of the mixed batch: mixed as the inputs, or as they are (flipped only)."""
        return self.inputs(y) if self.mix_targets else y


def draw_batch_mix(mixup: BatchMixup, rows: int, seed: int) -> BatchMix:
    """The weights for a loaded batch of `rows` clips, from `seed` (NumPy's Beta sampler, as
    both PANNs and HTS-AT draw them)."""
    count = (rows + 1) // 2 if mixup.pairing == "adjacent" else rows
    lam = np.random.default_rng(seed).beta(mixup.alpha, mixup.alpha, count)
    return BatchMix(mixup.pairing, torch.from_numpy(lam).float(), mixup.mix_targets)


def loaded_per_step(mixup: BatchMixup | None, batch_size: int) -> int:
    """Clips a step loads for `batch_size` training examples: twice as many when adjacent
    pairs are mixed (PANNs' main.py `batch_size * 2 if 'mixup' in augmentation`)."""
    return 2 * batch_size if mixup is not None and mixup.pairing == "adjacent" else batch_size
