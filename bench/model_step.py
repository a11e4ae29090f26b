"""The ceiling of a training loop: the model's own step alone, with no data and no loop.

Builds the C = 1 model of a run config (the same overrides `run.py` takes), then times forward
+ loss + backward + optimizer step on one random batch that never changes, and prints
samples/s. `bench/epoch_time.py` runs it beside the loops it compares (`results_loop.md`): a
loop can only approach this number, so a speed-up target above it is a target on the model's
arithmetic, not on the loop.

    .venv/bin/python -m bench.model_step dataset.batch_size=12 model.depth=12 ... [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from bench.harness import compose_spec
from c2f.models import build_model
from c2f.train.metrics import classification_loss
from c2f.train.optim import make_optimizer


def samples_per_s(overrides: list[str], steps: int, warmup: int = 3) -> float:
    spec = compose_spec(overrides)
    d = spec.dataset
    torch.manual_seed(0)
    model = build_model(spec.model, num_classes=d.num_classes, num_mel_bins=spec.num_mel_bins,
                        frames=d.target_length, patch=tuple(spec.model.patch), c=1)
    optimizer = make_optimizer(spec.optim, model.parameters())
    inputs = torch.randn(d.batch_size, d.target_length, spec.num_mel_bins)
    target = torch.rand(d.batch_size, d.num_classes).round() if d.multilabel else \
        torch.nn.functional.one_hot(torch.arange(d.batch_size) % d.num_classes,
                                    d.num_classes).float()
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        classification_loss(d.loss, model(inputs), target).backward()
        optimizer.step()
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * d.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps({"samples_per_s": samples_per_s(args.overrides, args.steps)}))


if __name__ == "__main__":
    main()
