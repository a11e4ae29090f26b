"""`make bench-gpu`, section 1b: CNN14's and HTS-AT's in-model mixup (model.batch_mixup) on the
device, in seconds: a bf16 training step with the mix, the mixing point (what the first stage
receives equals the mix of what it receives unmixed, SpecAugment drawn alike), and training
FLOPs per loaded clip counted on the device against the meta prediction. Then the same models'
mixed steps replayed as CUDA graphs (GraphedModel: batch norm and the mix inside the graph)
against eager steps from the same seeds: whether the capture held, the losses, and bn0's
running statistics, which the capture's warm-up must not move. Tiny widths: the check is of
the code path on the device, not of speed."""
from __future__ import annotations

import torch

from c2f.models import build_model
from c2f.models.mixup import draw_batch_mix
from c2f.spec import BatchMixup, ModelFeatures, ModelSpec
from c2f.train.flops import predicted_flops_per_sample, training_flops
from c2f.train.graphs import GraphedModel

CASES = {  # model, its first stage, its official mixup (conf/model/cnn14.yaml, htsat.yaml)
    "cnn14": (ModelSpec(name="cnn14", arch="cnn14", channels=(8, 16, 16, 32, 32, 64),
                        features=ModelFeatures()),
              "conv_block1", BatchMixup("adjacent", 1.0, True)),
    "htsat": (ModelSpec(name="htsat", arch="htsat", embed_dim=16, depths=(1, 1, 1, 1),
                        heads=(1, 2, 2, 4), chunk=64, features=ModelFeatures()),
              "patch_embed", BatchMixup("flipped", 0.5, False)),
}
FRAMES, MEL, ROWS = 256, 64, 8


def _stage_input(model: torch.nn.Module, stage: str, spec: torch.Tensor, **forward):
    captured: list[torch.Tensor] = []
    hook = getattr(model, stage).register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].detach().float()))
    torch.manual_seed(1)
    model(spec, **forward)
    hook.remove()
    return captured[0]


def mixup_check(report, device: torch.device) -> None:
    rows = ["| model | pairing | output rows | mixing point, max abs diff | bf16 step loss | "
            "FLOPs/clip counted on the device | predicted on meta | equal |",
            "|---|---|--:|--:|--:|--:|--:|---|"]
    for name, (spec, stage, mixup) in CASES.items():
        def factory(spec=spec):
            return build_model(spec, num_classes=10, num_mel_bins=MEL, frames=FRAMES,
                               patch=(16, 16))
        model = factory().to(device)
        spec_batch = torch.randn(ROWS, FRAMES, MEL, device=device) * 4 - 4
        mix = draw_batch_mix(mixup, ROWS, seed=0)
        plain = _stage_input(model, stage, spec_batch)
        mixed = _stage_input(model, stage, spec_batch, mix=mix)
        point = float((mixed - mix.inputs(plain)).abs().max())
        target = torch.rand(ROWS, 10, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(spec_batch, mix=mix)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(),
                                                                    mix.targets(target))
        loss.backward()
        counted = training_flops(model, spec_batch, mix=mix) / ROWS
        predicted = predicted_flops_per_sample(factory, FRAMES, MEL, mixup)
        cells = (name, mixup.pairing, f"{logits.shape[0]} of {ROWS}", f"{point:.1e}",
                 f"{float(loss):.3f}", f"{counted / 1e6:.2f} M", f"{predicted / 1e6:.2f} M",
                 "yes" if abs(counted - predicted) <= 1 else "NO")
        rows.append("| " + " | ".join(cells) + " |")
    report.add("## In-model mixup on the device (CNN14, HTS-AT)", "",
               f"Tiny widths, {ROWS} clips of {FRAMES} frames x {MEL} mel; the mixing point is "
               "compared in float32, the step runs in bf16 autocast.", "", *rows, "")


def _steps(model: torch.nn.Module, mixup: BatchMixup, device: torch.device, steps: int):
    """`steps` bf16 training steps (SGD) on seeded batches and mixes: the losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for step in range(steps):
        torch.manual_seed(100 + step)
        spec_batch = torch.randn(ROWS, FRAMES, MEL, device=device) * 4 - 4 + step
        target = torch.rand(ROWS, 10, device=device)
        mix = draw_batch_mix(mixup, ROWS, seed=step)
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
            logits = model(spec_batch, mix=mix)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(),
                                                                    mix.targets(target))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def graphed_mixup_check(report, device: torch.device, steps: int = 4) -> None:
    """Mixed steps of CNN14 and HTS-AT replayed as CUDA graphs against eager ones: the first
    step captures (its draws differ: the capture's warm-up used the generator), the later
    ones start from the same seeds, so their losses agree up to bf16 rounding; bn0 sees the
    same inputs either way, so its running mean must agree closely after all the steps."""
    rows = ["| model | captured | losses, eager | losses, graphs | bn0 running mean, max abs "
            "diff | batches tracked, eager / graphs |", "|---|---|---|---|--:|--:|"]
    for name, (spec, _stage, mixup) in CASES.items():
        models = []
        for _ in range(2):
            torch.manual_seed(0)
            models.append(build_model(spec, num_classes=10, num_mel_bins=MEL, frames=FRAMES,
                                      patch=(16, 16)).to(device).train())
        said = []
        graphed = GraphedModel(models[1], lambda: torch.autocast(
            device.type, dtype=torch.bfloat16, cache_enabled=False), said.append, rows=ROWS)
        eager_losses = _steps(models[0], mixup, device, steps)
        graph_losses = _steps(graphed, mixup, device, steps)
        diff = float((models[0].bn0.running_mean - models[1].bn0.running_mean).abs().max())
        tracked = f"{int(models[0].bn0.num_batches_tracked)} / " \
                  f"{int(models[1].bn0.num_batches_tracked)}"
        captured = "no: " + said[0] if graphed.eager else "yes"
        rows.append(f"| {name} | {captured} | {', '.join(f'{x:.4f}' for x in eager_losses)} | "
                    f"{', '.join(f'{x:.4f}' for x in graph_losses)} | {diff:.1e} | "
                    f"{tracked} |")
    report.add("## In-model mixup and batch norm under CUDA graphs (CNN14, HTS-AT)", "",
               f"{steps} bf16 SGD steps each way from the same seeds; step 1 captures.", "",
               *rows, "")
