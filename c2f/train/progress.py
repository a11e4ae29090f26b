"""Checkpoints inside an epoch (`trainer.checkpoint_minutes`): an AudioSet epoch on one GPU
takes hours, and a preempted or timed-out SLURM job would otherwise lose everything since the
last epoch's end.

Every `minutes` of training the loop also writes last.pt mid-epoch, with the epoch's progress
in its state (`TrainState.progress`): the batches of the epoch consumed, the running loss,
sample and skip counts and seconds (summed over DDP ranks; rank 0 resumes with the sums), and
the global RNG states (dropout and every other draw of the model). A resumed epoch skips the
consumed batches of the same seeded order and goes on from there, so a run resumed mid-epoch
ends with the same metrics as one never stopped (bitwise on CPU). Under DDP the ranks agree on
when: each looks at its clock every EVERY steps and the flags are summed (`0`: every step).
"""
from __future__ import annotations

import time

import torch

from c2f.train import stopping
from c2f.train.distributed import World, all_sum, barrier

EVERY = 20  # steps between looks at the clock under DDP (one tiny all-reduce each)


class MidEpoch:
    """When the loop checkpoints inside an epoch, what it saves, and how it resumes."""

    def __init__(self, minutes: float | None, world: World, device: torch.device):
        self.minutes, self.world, self.device = minutes, world, device
        self.saved = time.monotonic()
        self.stop_agreed: bool | None = None  # under DDP, the last `due`: the ranks stop there

    def restart_clock(self) -> None:
        """A checkpoint was written (mid-epoch or at an epoch's end)."""
        self.saved = time.monotonic()

    def due(self, step: int) -> bool:
        """Whether to checkpoint after the epoch's step `step` (0-based): every `minutes`, and
        when a stop signal waits for it (c2f/train/stopping.py; `stop_agreed` under DDP: the
        ranks stop at that checkpoint)."""
        self.stop_agreed = None
        if not self.world.active:
            return self.minutes == 0 or self._late() or stopping.pending()
        if self.minutes != 0 and step % EVERY != EVERY - 1:  # 0: every step (tests)
            self.stop_agreed = False
            return False
        late, stop = all_sum([float(self._late()), float(stopping.pending())], self.world)
        self.stop_agreed = stop > 0
        return self.minutes == 0 or late > 0 or self.stop_agreed

    def stops_evaluation(self, batch: int, batches_everywhere: int) -> bool:
        """Whether a stop signal saves the training before eval batch `batch`: at once in one
        process; under DDP the ranks agree every EVERY batches while each has batches left
        (`batches_everywhere`: their shards differ by one clip)."""
        if not self.world.active:
            return stopping.pending()
        if batch % EVERY != EVERY - 1 or batch >= batches_everywhere:
            return False
        return self.agree_to_stop()

    def agree_to_stop(self) -> bool | None:
        """At a checkpoint every rank reaches: whether the ranks of a DDP run stop there, for a
        signal one of them holds (a collective, so it also waits for rank 0's files); None
        in one process, where the signal held is enough (stopping.after_checkpoint)."""
        if not self.world.active:
            return None
        return all_sum([1.0 if stopping.pending() else 0.0], self.world)[0] > 0

    def settled(self, agreed: bool | None) -> bool | None:
        """After a checkpoint the ranks of a DDP run agreed to stop at: every rank waits for
        rank 0's write (a barrier), so that none ends the job while rank 0 writes (torchrun
        ends the others when one exits). `agreed` as it came; None in one process."""
        if not self.world.active:
            return None
        if agreed:
            barrier(self.world)
        return agreed

    def _late(self) -> bool:
        return self.minutes is not None and time.monotonic() - self.saved >= 60 * self.minutes

    def snapshot(self, steps: int, loss_sum: torch.Tensor, samples: int, skipped: int,
                 seconds: float, untrained: int = 0) -> dict:
        """The epoch's progress after `steps` batches, summed over ranks (a collective;
        `untrained`, the good clips of steps skipped under DDP, is every rank's already)."""
        loss, samples, skipped = all_sum([float(loss_sum), samples, skipped], self.world)
        return {"steps": steps, "loss_sum": loss, "samples": int(samples),
                "skipped": int(skipped), "seconds": seconds, "untrained": untrained,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(self.device)
                if self.device.type == "cuda" else None}

    def restore(self, progress: dict) -> tuple[int, torch.Tensor, int, int, float]:
        """(steps consumed, loss sum, samples, skipped, seconds) of a resumed epoch; zeros for
        a fresh epoch, and on ranks other than 0 (the sums are rank 0's)."""
        loss = torch.zeros((), dtype=torch.float64, device=self.device)
        if not progress:
            return 0, loss, 0, 0, 0.0
        if not self.world.is_main:
            return progress["steps"], loss, 0, 0, progress["seconds"]
        return (progress["steps"], loss + progress["loss_sum"], progress["samples"],
                progress["skipped"], progress["seconds"])

    def restore_rng(self, progress: dict) -> None:
        """The RNG states of a resumed epoch, set once its loader iterator exists (making one
        draws the loader's base seed from the global RNG, which the saved states are past)."""
        torch.set_rng_state(progress["rng"])
        if progress.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(progress["cuda_rng"], self.device)
