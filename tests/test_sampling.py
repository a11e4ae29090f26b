"""The epoch's draw of training clips (`dataset.balanced_sampler`, c2f/data/sampling.py):
AST's weighted draw, and PANNs' / HTS-AT's one clip of each class in turn."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from c2f.data.manifest import Clip, Manifest
from c2f.data.sampling import ClassCycleDraw, Draw, WeightedDraw, class_members, train_draw
from c2f.train.distributed import ShardedShuffle, World


def manifest(labels: list[tuple[int, ...]], classes: int) -> Manifest:
    clips = [Clip(path=Path(f"{i}.wav"), label_ids=ids, line=i) for i, ids in enumerate(labels)]
    return Manifest(path=Path("m.json"), clips=clips, class_names=[str(k) for k in range(classes)])


# class 0: 1 clip, class 1: 3 clips, class 2: 10 clips, class 3: none (left out of the rounds)
SKEWED = manifest([(0,), (1,), (1,), (1,), *[(2,)] * 10], classes=4)


def test_each_round_takes_one_clip_of_every_class_that_has_clips():
    draw = train_draw("classes", SKEWED)
    assert isinstance(draw, ClassCycleDraw)
    order = draw.order(14, torch.Generator().manual_seed(5))
    label = [SKEWED.clips[i].label_ids[0] for i in order]
    assert len(order) == 14
    for start in range(0, 12, 3):  # rounds of the three classes that have clips
        assert sorted(label[start:start + 3]) == [0, 1, 2]
    # a class's clips come in a shuffled cycle: no clip again before the others of its class
    ones = [i for i in order if SKEWED.clips[i].label_ids == (1,)]
    assert sorted(ones[:3]) == [1, 2, 3]
    assert Counter(order)[0] == 5  # the lone clip of class 0, once a round


def test_the_draw_is_the_seeds_and_split_across_ranks_without_overlap():
    draw = train_draw("classes", SKEWED)
    first = draw.order(14, torch.Generator().manual_seed(1))
    assert first == draw.order(14, torch.Generator().manual_seed(1))
    assert first != draw.order(14, torch.Generator().manual_seed(2))
    ranks = [ShardedShuffle(14, 1, World(rank=r, size=2), draw) for r in (0, 1)]
    together = [i for pair in zip(*(list(s) for s in ranks)) for i in pair]
    assert together == first


def test_multilabel_clips_belong_to_each_of_their_classes():
    data = manifest([(0, 1), (1,), (2,), (0, 2)], classes=3)
    assert class_members(data) == [[0, 3], [0, 1], [2, 3]]
    order = train_draw("classes", data).order(300, torch.Generator().manual_seed(0))
    # each class is drawn 100 times: a clip of two classes comes with both
    by_class = Counter(k for i in order for k in data.clips[i].label_ids)
    assert min(by_class.values()) >= 100


def test_asts_weighted_draw_and_the_plain_shuffle_are_kept():
    assert type(train_draw(False, SKEWED)) is Draw
    weighted = train_draw(True, SKEWED)
    assert isinstance(weighted, WeightedDraw)
    order = weighted.order(3000, torch.Generator().manual_seed(0))
    # AST's weights: 1000 / (count + 0.01) per class, so each class is drawn about as often
    per_class = Counter(SKEWED.clips[i].label_ids[0] for i in order)
    assert all(900 < per_class[k] < 1100 for k in (0, 1, 2))
    shuffle = Draw().order(14, torch.Generator().manual_seed(0))
    assert sorted(shuffle) == list(range(14))


@pytest.mark.parametrize("value", ["weighted", 1, "on"])
def test_an_unknown_sampler_is_refused_with_the_choices(value):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from c2f.spec import ConfigError, build_spec
    from tests.conftest import ROOT

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset.balanced_sampler={value}"])
    with pytest.raises(ConfigError, match="balanced_sampler"):
        build_spec(OmegaConf.to_container(cfg, resolve=True))
