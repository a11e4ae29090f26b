"""Mixed precision: `trainer.precision=auto|fp32|bf16|fp16`.

AST trains in fp16 autocast with a GradScaler (src/traintest.py, `autocast()` and
`GradScaler()`); bf16 runs at the same tensor-core speed on Ampere and later and needs no
scaler. `auto` is bf16 on an Ampere or later GPU, fp16 on an older one (V100, T4), fp32 on
CPU. The
precision is not part of a run's identity: a checkpoint resumes under any of them."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES = ("auto", *_DTYPES)
EVAL_CHOICES = ("fp32", "train")


def for_evaluation(precision: str, eval_precision: str) -> str:
    """The precision evaluation runs in (`trainer.eval_precision`): fp32, as AST's `validate`
    runs without autocast (src/traintest.py; only its training step autocasts), or the
    training precision ("train"; faster on a GPU, but bf16 logits tie: on an AudioSet-sized
    eval set mAP came out ~0.1 point lower, of the size of the paper's differences)."""
    return precision if eval_precision == "train" else "fp32"


def resolve(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    if device.type != "cuda":
        return "fp32"
    # bf16 tensor cores from Ampere (compute capability 8) on; torch's is_bf16_supported also
    # counts the emulated bf16 of a V100 or T4, where fp16 (with a scaler) is the fast one
    return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"


@dataclass
class Precision:
    """Autocast for the forward pass and, for fp16, a GradScaler around the optimizer step."""

    name: str
    device: torch.device

    def __post_init__(self):
        self.name = resolve(self.name, self.device)
        self.dtype = _DTYPES[self.name]
        self.scaler = torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (and fp32 runs) on TF32
            torch.backends.cudnn.allow_tf32 = True

    def autocast(self, cache: bool = True):
        """The precision's autocast context; `cache=False` for CUDA graph captures."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=cache)

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of `loss` into the parameters' .grad (added to what is there, so several
        micro-batches accumulate); scaled for fp16."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def apply(self, optimizer: torch.optim.Optimizer, parameters,
              grad_clip: float | None) -> None:
        """(clip) + optimizer step on the accumulated gradients; with fp16 the step is skipped
        when the scaled gradients overflow, as GradScaler does."""
        if self.scaler is None:
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
            optimizer.step()
            return
        if grad_clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict | None:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
