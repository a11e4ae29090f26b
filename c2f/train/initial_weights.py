"""A run's first weights from `model.pretrained`. The checkpoint is placed on the model of the
run's input at full resolution (C = 1), where the official rules for fitting a checkpoint apply
(AST's `ast_models.py` cuts a positional table for a shorter clip and interpolates it for a
longer one), and then moved to a coarse first phase's model as a phase transition moves weights
(AST: the table resampled bilinearly, the kernel by the method). A coarse phase sees the whole
clip, compressed: fitting the checkpoint to its grid directly would read it as a shorter clip
and keep only the middle of the table's time axis."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from c2f.compression import Compression
from c2f.models import loaded_note, model_family
from c2f.spec import ModelSpec


def load_initial_weights(model: nn.Module, spec: ModelSpec, compression: Compression, log,
                         full_resolution: Callable[[], nn.Module] | None = None,
                         record: Callable[[dict], None] | None = None) -> None:
    """Load `spec.pretrained` into `model` (the first phase's). `full_resolution` builds the
    model of the run's input at C = 1 when the first phase is coarse (a 2-phase run's C = 4,
    Table 1's single phase at C = 2): the checkpoint goes there first. Logs what was left at
    init, what of the file was not used and what was adapted, and gives the same to `record`
    (plan.json's `initial_weights`, RunDir.record_initial_weights)."""
    family = model_family(spec.arch)
    if full_resolution is None:
        left = family.load_pretrained(model, spec, compression)
        log(loaded_note(spec.pretrained, left))
    else:
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            final = full_resolution()  # (building it seeds the RNGs: the run's are restored)
        left = family.load_pretrained(final, spec, compression)
        family.transfer(final, model, compression)
        log(loaded_note(spec.pretrained, left) + " (placed on the model of the input at full "
            "resolution, then moved to this phase's as between phases)")
    if record is not None:
        record({"file": str(spec.pretrained), "left_at_init": list(left),
                "not_used": dict(getattr(left, "unused", {})),
                "adapted": list(getattr(left, "adapted", [])),
                "via_full_resolution": full_resolution is not None})
