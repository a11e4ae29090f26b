"""PANNs' and HTS-AT's in-model SpecAugmentation (c2f/models/augment.py): torchlibrosa's
DropStripes (`stripe_mask`), drawn on the input's device for the whole batch at once, and
SpecAugmentation (`spec_augmentation`: time and frequency stripes in one pass)."""
from __future__ import annotations

import random

import pytest
import torch

from c2f.models.augment import spec_augmentation, stripe_mask


def drop_stripes(x: torch.Tensor, dim: int, width: int, stripes: int) -> torch.Tensor:
    """torchlibrosa's DropStripes along one axis."""
    return x.masked_fill(stripe_mask(x, dim, width, stripes), 0)


def zero_runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of zeros in a 1-D 0/1 tensor."""
    runs, start = [], None
    for i, value in enumerate(row.tolist() + [1]):
        if value == 0 and start is None:
            start = i
        elif value != 0 and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def torchlibrosa_dropped(total: int, width: int, stripes: int, rng: random.Random) -> set[int]:
    """The positions torchlibrosa's DropStripes.transform_slice zeroes in one example (its
    draws: width randint(0, drop_width), start randint(0, total - width))."""
    dropped = set()
    for _ in range(stripes):
        distance = rng.randrange(width)
        start = rng.randrange(total - distance)
        dropped.update(range(start, start + distance))
    return dropped


@pytest.mark.parametrize("dim, width", [(2, 16), (3, 8)])
def test_each_example_loses_at_most_its_stripes_as_whole_bands_across_the_other_axis(dim, width):
    torch.manual_seed(0)
    x = torch.rand(64, 1, 40, 24) + 0.5  # no zero of its own
    out = drop_stripes(x, dim, width, 2)
    assert (x >= 0.5).all()  # the input is left as it was
    other = 5 - dim  # time stripes span every mel bin, frequency stripes every frame
    dropped = (out == 0).all(other).squeeze(1)  # [64, size along dim]
    assert torch.equal((out == 0).any(other).squeeze(1), dropped)  # whole bands only
    kept = ~dropped.view(64, 1, *([-1, 1] if dim == 2 else [1, -1]))
    assert torch.equal(out, x * kept)  # everything else untouched
    for row in dropped:
        runs = zero_runs((~row).int())
        assert len(runs) <= 2 and all(length <= 2 * (width - 1) for _, length in runs)
    assert dropped.any(1).float().mean() > 0.8  # all but a few examples lost something


def test_the_dropped_share_matches_torchlibrosas_draws():
    """Mean and spread of the zeroed frames per example against torchlibrosa's own procedure
    (time stripes of up to 64 frames over 100 frames, as PANNs' Cnn14 at C = 10)."""
    torch.manual_seed(1)
    rows, total, width = 4000, 100, 64
    out = drop_stripes(torch.ones(rows, 1, total, 8), 2, width, 2)
    ours = (out[:, 0, :, 0] == 0).sum(1).float()
    rng = random.Random(1)
    theirs = torch.tensor([len(torchlibrosa_dropped(total, width, 2, rng))
                           for _ in range(rows)], dtype=torch.float)
    assert float(ours.mean()) == pytest.approx(float(theirs.mean()), abs=1.5)  # s.e. ~0.4
    assert float(ours.std()) == pytest.approx(float(theirs.std()), rel=0.06)
    assert int(ours.max()) <= 2 * (width - 1)


def test_a_stripe_wider_than_a_short_input_is_cut_to_it():
    torch.manual_seed(2)
    out = drop_stripes(torch.ones(200, 1, 6, 4), 2, 64, 2)  # C = 16: 6 frames
    dropped = (out[:, 0, :, 0] == 0).sum(1)
    assert int(dropped.max()) <= 6 and (dropped >= 5).any()  # stripes of up to 5 frames
    assert (dropped > 0).float().mean() > 0.5


def test_gradients_stop_in_the_dropped_bands_only():
    torch.manual_seed(3)
    x = torch.rand(8, 1, 30, 12, requires_grad=True)
    out = drop_stripes(x, 2, 10, 2)
    out.sum().backward()
    assert torch.equal(x.grad, (out != 0).float())


def test_the_draws_come_from_the_inputs_device_not_the_host():
    """On a GPU a CUDA graph advances the device's generator at every replay but would freeze a
    host draw; an input on another device (meta here) must leave the CPU generator alone."""
    torch.manual_seed(4)
    expected = torch.rand(3)
    torch.manual_seed(4)
    out = drop_stripes(torch.ones(16, 1, 50, 8, device="meta"), 2, 16, 2)
    assert out.device.type == "meta" and out.shape == (16, 1, 50, 8)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_spec_augmentation_zeroes_whole_frames_and_whole_bins_and_nothing_else():
    """Every zero lies in a dropped frame (all its bins zero) or a dropped bin (all its frames
    zero); both kinds occur; the rest is the input; the input is left as it was."""
    torch.manual_seed(5)
    x = torch.rand(32, 1, 60, 16) + 0.5
    out = spec_augmentation(x, 12, 4)
    assert (x >= 0.5).all()
    zero = out[:, 0] == 0
    frames, bins = zero.all(2), zero.all(1)  # [32, 60], [32, 16]
    assert torch.equal(zero, frames[:, :, None] | bins[:, None, :])
    assert frames.any() and bins.any()
    assert torch.equal(out[~(out == 0)], x[~(out == 0)])
