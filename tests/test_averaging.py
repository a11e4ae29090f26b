"""Weight averaging: AST's epoch range (a running sum) and HTS-AT's top k (kept files)."""
from __future__ import annotations

import torch

from c2f.spec import AverageSpec
from c2f.train.averaging import WeightAverager


def _model(value: float) -> torch.nn.Module:
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(-value)
    return layer


def test_epochs_mode_averages_final_phase_epochs_in_range(tmp_path):
    averager = WeightAverager(AverageSpec("epochs", start=2, end=4), 6, tmp_path)
    for epoch, final in ((1, False), (2, False), (3, True), (4, True), (5, True)):
        averager.update(epoch, 0.0, _model(float(epoch)), final)
    assert averager.averaged_epochs() == [3, 4]  # 2 is a coarse epoch, 5 is past the end
    torch.testing.assert_close(averager.average()["weight"], torch.full((1, 2), 3.5))
    assert not tmp_path.joinpath("epoch0003.pt").exists()  # a running sum, no files


def test_epochs_mode_resumes_with_the_same_sum(tmp_path):
    straight = WeightAverager(AverageSpec("epochs"), 4, tmp_path)
    for epoch in range(1, 5):
        straight.update(epoch, 0.0, _model(epoch * 0.1), True)
    first = WeightAverager(AverageSpec("epochs"), 4, tmp_path)
    for epoch in (1, 2):
        first.update(epoch, 0.0, _model(epoch * 0.1), True)
    resumed = WeightAverager(AverageSpec("epochs"), 4, tmp_path)
    resumed.load_state_dict(first.state_dict())
    for epoch in (3, 4):
        resumed.update(epoch, 0.0, _model(epoch * 0.1), True)
    for key, tensor in straight.average().items():
        assert torch.equal(tensor, resumed.average()[key])


def test_top_k_keeps_the_best_files_and_averages_them(tmp_path):
    averager = WeightAverager(AverageSpec("top_k", k=2), 5, tmp_path)
    metrics = {1: 0.3, 2: 0.5, 3: 0.4, 4: 0.5, 5: 0.1}
    for epoch, value in metrics.items():
        averager.update(epoch, value, _model(float(epoch)), True)
        averager.after_checkpoint()
    assert averager.averaged_epochs() == [2, 4]  # 0.5 twice: the earlier first, then 4
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch0002.pt", "epoch0004.pt"]
    torch.testing.assert_close(averager.average()["bias"], torch.tensor([-3.0]))


def test_top_k_keeps_an_evicted_file_until_the_checkpoint_drops_it(tmp_path):
    averager = WeightAverager(AverageSpec("top_k", k=1), 3, tmp_path)
    averager.update(1, 0.2, _model(1.0), True)
    averager.after_checkpoint()
    saved = averager.state_dict()  # the checkpoint of epoch 1
    averager.update(2, 0.9, _model(2.0), True)
    assert (tmp_path / "epoch0001.pt").exists()  # still listed by the last checkpoint
    # the process dies before epoch 2's checkpoint: the resumed run sees epoch 1's state
    resumed = WeightAverager(AverageSpec("top_k", k=1), 3, tmp_path)
    resumed.load_state_dict(saved)
    assert [p.name for p in tmp_path.glob("*.pt")] == ["epoch0001.pt"]
    torch.testing.assert_close(resumed.average()["weight"], torch.full((1, 2), 1.0))


def test_top_k_never_keeps_an_epoch_without_a_metric(tmp_path):
    """An undefined metric (NaN: an eval set where no class has both positives and negatives)
    sorted ahead of every number and would have been averaged."""
    averager = WeightAverager(AverageSpec("top_k", k=2), 3, tmp_path)
    for epoch, value in ((1, float("nan")), (2, 0.3), (3, 0.2)):
        averager.update(epoch, value, _model(float(epoch)), True)
    assert averager.averaged_epochs() == [2, 3]


def test_top_k_with_no_defined_metric_says_so_not_that_no_epoch_was_in_range(tmp_path):
    """Review 6 F2: both epochs were final-phase epochs in 1..2, and a resumed run still knows."""
    averager = WeightAverager(AverageSpec("top_k", k=2), 2, tmp_path)
    averager.update(1, float("nan"), _model(1.0), True)
    resumed = WeightAverager(AverageSpec("top_k", k=2), 2, tmp_path)
    resumed.load_state_dict(averager.state_dict())
    resumed.update(2, None, _model(2.0), True)
    assert resumed.average() is None
    assert resumed.nothing_averaged("mAP") == (
        "average=top_k: no final-phase epoch in 1..2 has a defined mAP (epochs 1, 2: no class "
        "of the eval set has both positives and negatives); nothing averaged")
    late = WeightAverager(AverageSpec("epochs", start=3), 2, tmp_path)
    assert late.nothing_averaged("acc") == "average=epochs: no final-phase epoch in 3..2; " \
        "nothing averaged"


def test_the_summary_lists_top_k_epochs_and_gives_consecutive_ones_as_a_range():
    """Top-3 of epochs 2, 3 and 5 printed `epochs 2..5`: four epochs, one of them not averaged."""
    from c2f.train.records import format_summary

    summary = {"metric": "acc", "best": 0.5, "best_epoch": 5, "final": 0.5, "chance": 0.1,
               "flops": 500, "seconds": 5.0, "silent_clips": {"train": 0, "eval": 0},
               "skipped_clips": 0}
    epochs = [{"kind": "epoch", "phase": 0, "C": 1, "epoch": e, "value": v, "flops": 100,
               "seconds": 1.0} for e, v in enumerate([0.1, 0.3, 0.4, 0.2, 0.5], 1)]
    for mode, averaged, said in (("top_k", [2, 3, 5], "epochs 2, 3, 5"),
                                 ("epochs", [2, 3, 4, 5], "epochs 2..5"),
                                 ("top_k", [5], "epochs 5)")):
        record = {"kind": "average", "average": mode, "averaged_epochs": averaged,
                  "value": 0.45}
        printed = format_summary(summary, [*epochs, record])
        assert f"averaged model ({mode}, {said}" in printed, printed


def test_top_k_ranks_candidates_from_inside_the_epoch(tmp_path):
    """HTS-AT evaluates every 0.1 epoch (average.evals_per_epoch): the candidates are the models
    after each n-th of the epoch's steps, named by how far training got (part 2 of 4 of epoch 3:
    2.5); a checkpoint written before evals_per_epoch (metric, epoch) reads as epochs' ends."""
    averager = WeightAverager(AverageSpec("top_k", k=2, evals_per_epoch=4), 3, tmp_path)
    assert [averager.parts_due(i, 10, 3, True) for i in range(10)] == [
        None, 1, None, None, 2, None, 3, None, None, None]  # after 2, 5 and 7 of 10 steps
    assert WeightAverager(AverageSpec("top_k"), 3, tmp_path).parts_due(4, 10, 3, True) is None
    # an epoch the averaging does not take (a coarse phase's, one before average.start): none
    assert averager.parts_due(4, 10, 2, False) is None
    later = WeightAverager(AverageSpec("top_k", start=3, evals_per_epoch=4), 3, tmp_path)
    assert later.parts_due(4, 10, 2, True) is None and later.parts_due(4, 10, 3, True) == 2
    for epoch, part, value in ((3, 1, 0.2), (3, 2, 0.6), (3, 3, 0.1), (3, None, 0.5)):
        averager.update(epoch, value, _model(value), True, part=part)
    assert averager.averaged_epochs() == [2.5, 3]
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "epoch0003.pt", "epoch0003_01of04.pt", "epoch0003_02of04.pt"]  # 1 of 4: until a save
    averager.after_checkpoint()
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch0003.pt",
                                                              "epoch0003_02of04.pt"]
    torch.testing.assert_close(averager.average()["weight"], torch.full((1, 2), 0.55))
    resumed = WeightAverager(AverageSpec("top_k", k=2, evals_per_epoch=4), 3, tmp_path)
    resumed.load_state_dict(averager.state_dict())
    torch.testing.assert_close(resumed.average()["weight"], torch.full((1, 2), 0.55))
    old = WeightAverager(AverageSpec("top_k", k=2, evals_per_epoch=4), 3, tmp_path)
    old.load_state_dict({"kept": [[0.5, 3]]})  # written by c2f before evals_per_epoch
    assert old.averaged_epochs() == [3] and (tmp_path / "epoch0003.pt").exists()
