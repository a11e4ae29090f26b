"""The order in which an epoch draws its training clips (`dataset.balanced_sampler`):

- `false`: every clip once, shuffled;
- `true`: AST's balanced sampling (egs/audioset/gen_weight_file.py, src/run.py
  WeightedRandomSampler): clips drawn with replacement, weighted by their labels' rarity;
- `classes`: one clip of each class in turn, the classes in a fresh random order each round,
  each class's clips in a shuffled cycle: PANNs' BalancedTrainSampler
  (utils/data_generator.py) and HTS-AT's balanced_data (data_generator.py generate_queue,
  which draws the clip of a class with replacement; the classes come as often either way).
  A multi-label clip belongs to each of its classes.

An epoch draws as many clips as the training set holds, from a seed of its own, so a resumed
or distributed epoch draws the same ones.
"""
from __future__ import annotations

import numpy as np
import torch

from c2f.data.manifest import Manifest


class Draw:
    """A plain shuffle; the base of the balanced draws."""

    def order(self, length: int, generator: torch.Generator) -> list[int]:
        return torch.randperm(length, generator=generator).tolist()


class WeightedDraw(Draw):
    """AST's: with replacement, clip weights from `balanced_weights`."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights

    def order(self, length: int, generator: torch.Generator) -> list[int]:
        return torch.multinomial(self.weights, length, replacement=True,
                                 generator=generator).tolist()


class ClassCycleDraw(Draw):
    """PANNs' and HTS-AT's: rounds of one clip per class, classes without clips left out."""

    def __init__(self, members: list[list[int]]):
        self.members = [torch.tensor(m) for m in members if m]

    def order(self, length: int, generator: torch.Generator) -> list[int]:
        def shuffled(k: int) -> list[int]:
            clips = self.members[k]
            return clips[torch.randperm(len(clips), generator=generator)].tolist()

        queues = [shuffled(k) for k in range(len(self.members))]
        out: list[int] = []
        while len(out) < length:
            for k in torch.randperm(len(queues), generator=generator).tolist():
                if not queues[k]:  # a class's cycle is through: its clips shuffled again
                    queues[k] = shuffled(k)
                out.append(queues[k].pop())
        return out[:length]


def balanced_weights(manifest: Manifest) -> torch.Tensor:
    """AST's balanced sampling (egs/audioset/gen_weight_file.py): class weight
    1000 / (count + 0.01); a clip's weight is the sum over its labels."""
    counts = np.zeros(manifest.num_classes)
    for clip in manifest.clips:
        counts[list(clip.label_ids)] += 1
    class_weight = 1000.0 / (counts + 0.01)
    return torch.tensor([class_weight[list(c.label_ids)].sum() for c in manifest.clips])


def class_members(manifest: Manifest) -> list[list[int]]:
    """The clips of each class, by index into the manifest."""
    members: list[list[int]] = [[] for _ in range(manifest.num_classes)]
    for i, clip in enumerate(manifest.clips):
        for label in clip.label_ids:
            members[label].append(i)
    return members


def train_draw(setting: bool | str, manifest: Manifest) -> Draw:
    """The draw `dataset.balanced_sampler` names, over the training manifest."""
    if setting == "classes":
        return ClassCycleDraw(class_members(manifest))
    return WeightedDraw(balanced_weights(manifest)) if setting is True else Draw()
