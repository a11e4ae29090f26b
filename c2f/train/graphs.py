"""CUDA graphs for the training step (`trainer.cuda_graphs`).

A coarse phase's step is short: AST-Base at C = 4 (256 frames, batch 48, bf16) has about 15 ms
of GPU work but ~3,000 kernel launches, and on the machines c2f was measured on the host needs
25 ms to launch them (bench/results_gpu.md, section 2b). Replaying the forward and the backward
as two CUDA graphs (`torch.cuda.make_graphed_callables`: no compiler, captured in seconds)
launches each in one call, so the step costs what the GPU takes for it (AST-Base, H200: a C = 4
epoch 0.31-0.33 of a full one for 0.234 of its FLOPs, the bare graphed step's own 0.299).

The training forward and backward are graphed for the shape of the phase's first full batch; a
short batch (the last, or one that lost a bad clip) runs eagerly. Batch norm (CNN14, HTS-AT)
and in-model mixup are graphed too: the running statistics update inside the graph, and each
step's mixing weights are an input of it. The optimizer step stays outside the graphs (fused
Adam is a handful of launches). Evaluation's forward is graphed on its own (`GraphedEval`): a
coarse phase's evaluation is as launch-bound as its training, and on ESC-50, Speech Commands or
balanced AudioSet the eval set is as large as the training set.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import nn

from c2f.models.mixup import BatchMix
from c2f.spec import SELF_GRAPHING_COMPILE, ConfigError


def graph_obstacle(device: torch.device, distributed: bool, compile_mode: bool | str,
                   split: bool = False) -> str | None:
    """Why a phase's training step (or evaluation's forward) cannot be graphed; None when it
    can. What only a capture can tell (a host sync in the forward, random draws off the GPU,
    too little memory) makes that phase eager, saying why (GraphedModel, GraphedEval)."""
    if device.type != "cuda":
        return f"training runs on {device.type}, not on a CUDA device"
    if distributed:
        return "DDP overlaps its gradient all-reduce with the backward, which a graph would fix"
    if compile_mode in SELF_GRAPHING_COMPILE:
        return f"trainer.compile={compile_mode} captures CUDA graphs itself"
    if split:  # a graph's gradient outputs are static buffers, rewritten by the next replay
        return "trainer.micro_batch splits the step: gradients accumulate outside a graph"
    return None


def use_graphs(setting: bool | str, obstacle: str | None) -> bool:
    """`trainer.cuda_graphs`: auto graphs where it can; true fails naming the obstacle."""
    if setting is False:
        return False
    if obstacle is None:
        return True
    if setting is True:
        raise ConfigError(f"`trainer.cuda_graphs=true`: cannot graph the training step: "
                          f"{obstacle}; set trainer.cuda_graphs=auto or false")
    return False


def replay_agrees(replayed: torch.Tensor, eager: torch.Tensor, tolerance: float = 1e-2) -> bool:
    """A captured forward's output against the eager one of the same batch: equal up to
    `tolerance` of the outputs' scale (the same kernels; bf16 rounding at most)."""
    scale = float(eager.float().abs().max()) + 1e-6
    return bool(torch.isfinite(replayed).all()) and \
        float((replayed.float() - eager.float()).abs().max()) <= tolerance * scale


def device_rng(device: torch.device):
    """The get and set of `device`'s default generator."""
    if device.type == "cuda":
        return (lambda: torch.cuda.get_rng_state(device),
                lambda state: torch.cuda.set_rng_state(state, device))
    return torch.get_rng_state, torch.set_rng_state


def draws_off_device(forward, inputs, rng_state=None) -> bool:
    """Whether a training forward draws random numbers that a CUDA graph would freeze. Two
    forwards of one batch (`inputs`: a tensor or a tuple of the forward's arguments) from one
    state of the inputs' device's generator (`rng_state`: its get and set, to override)
    agree unless some draw came from elsewhere (torch's CPU generator, Python's `random`,
    NumPy): a graph would replay those draws unchanged at every step. Dropout and c2f's
    DropStripes draw on the device generator, which graphs advance at each replay. The two
    run in float32 (autocast off), where the same kernels agree to far below the 1e-5 that
    tells them apart, and a changed mask moves the output far more. The generators are left
    as they were (batch norm's running statistics are not: see `buffers_kept`)."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    get, put = rng_state or device_rng(args[0].device)
    state = get()
    with torch.no_grad(), torch.random.fork_rng(devices=[]), \
            torch.autocast(args[0].device.type, enabled=False):  # the CPU generator comes back
        first = forward(*args)
        put(state)
        second = forward(*args)
    put(state)
    return not replay_agrees(second, first, tolerance=1e-5)


@contextmanager
def buffers_kept(model: nn.Module):
    """Every buffer of `model` written back, in place, as it was on entry: batch norm's
    running statistics, which the capture's checks and warm-up steps would otherwise move by
    steps that never happened (a graph's replays update them in place, as eager steps do)."""
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


class _Forward(nn.Module):
    """The model behind a module of its own, so that capturing patches this one's forward and
    leaves the model's (evaluation, FLOPs counting, checkpoints) as it is. With in-model
    mixup (`model.batch_mixup`) the step's weights are a second input of the graph, and its
    pairing (fixed for a run) is kept here."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.mixing: BatchMix | None = None  # the pairing and target rule of a mixed step

    def forward(self, inputs: torch.Tensor, lam: torch.Tensor | None = None) -> torch.Tensor:
        if lam is None:
            return self.model(inputs)
        return self.model(inputs, mix=replace(self.mixing, lam=lam))


def _pairing(mix: BatchMix | None) -> str | None:
    return None if mix is None else mix.pairing


class GraphedModel(nn.Module):
    """The training model, its step replayed as CUDA graphs captured from the first batch of
    `rows` clips it trains on (any, when None); any other batch shape runs eagerly. In-model
    mixup's weights of each step are copied into the graph (their pairing is fixed), and
    batch norm updates its running statistics in the graph as it does eagerly.
    `autocast` makes the precision's context without the autocast cache (which captures do
    not support). A model that cannot be captured (a host sync or data-dependent shapes in
    its forward, random draws off the GPU that a graph would freeze, or too little memory for
    the capture) trains eagerly, saying why, unless `strict` (trainer.cuda_graphs=true)."""

    def __init__(self, model: nn.Module, autocast, log=print, strict: bool = False,
                 rows: int | None = None):
        super().__init__()
        self.step = _Forward(model)
        self.autocast, self.log, self.strict, self.rows = autocast, log, strict, rows
        self.shape: torch.Size | None = None
        self.eager = False  # the capture failed

    @property
    def model(self) -> nn.Module:
        return self.step.model

    @property
    def _plain(self) -> nn.Module:
        """The model itself, not torch.compile's wrapper (trainer.compile=default), for the
        forwards outside the graphs: a short batch or the capture's checks would each compile
        it again (a minute a phase for AST-Base on an H200)."""
        return getattr(self.model, "_orig_mod", self.model)

    @property
    def _name(self) -> str:
        return type(self._plain).__name__

    def _plain_step(self) -> _Forward:
        """The step on the plain model (`draws_off_device`'s fp32, no-grad forwards)."""
        plain = _Forward(self._plain)
        plain.mixing = self.step.mixing
        return plain

    def forward(self, inputs: torch.Tensor, mix: BatchMix | None = None) -> torch.Tensor:
        if not self.training:
            return self.model(inputs)
        args = (inputs,) if mix is None else \
            (inputs, mix.lam.to(inputs.device, torch.float32, non_blocking=True))
        if self.shape is None and self.rows in (None, len(inputs)):
            self._capture(args, mix)
        if self.eager or inputs.shape != self.shape or _pairing(mix) != _pairing(self.step.mixing):
            # no graphs for this phase (the compiled model, if any), or for this batch alone
            model = self.model if self.eager else self._plain
            return model(inputs) if mix is None else model(inputs, mix=mix)
        return self.step(*args)

    def _capture(self, args: tuple[torch.Tensor, ...], mix: BatchMix | None) -> None:
        self.shape = args[0].shape
        self.step.mixing = mix
        gc.collect()  # an earlier phase's graphs (a patched forward is a reference cycle)
        # the capture's warm-up steps draw dropout and SpecAugment from the device generator:
        # put back, a capture draws nothing, so a run resumed (and captured again) mid-phase
        # draws what the run never stopped drew
        get_rng, put_rng = device_rng(args[0].device)
        rng = get_rng()
        try:
            with self.autocast(), buffers_kept(self.model):
                if draws_off_device(self._plain_step(), args):
                    raise RuntimeError("its forward draws random numbers off the GPU (torch's "
                                       "CPU generator, Python's random or NumPy), which a graph "
                                       "would replay unchanged at every step")
                torch.cuda.make_graphed_callables(
                    self.step, tuple(a.detach().clone() for a in args))
        except (RuntimeError, AssertionError) as err:
            if self.strict:
                raise RuntimeError(f"trainer.cuda_graphs=true: capturing "
                                   f"{self._name}'s step failed: {err}") from err
            self.eager = True
            gc.collect()  # an out-of-memory capture leaves its pool to free for eager steps
            torch.cuda.empty_cache()
            self.log(f"cuda graphs: capturing {self._name}'s training step "
                     f"failed ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                     "this phase trains eagerly (trainer.cuda_graphs=false skips the attempt)")
            return
        finally:
            put_rng(rng)
        mixed = "" if mix is None else f", mixed in the model ({mix.pairing} pairs),"
        self.log(f"cuda graphs: training steps of shape {tuple(self.shape)}{mixed} replay a "
                 "captured forward and backward")


class GraphedEval(nn.Module):
    """Evaluation's no-grad forward replayed as one CUDA graph, captured from the first batch
    of `rows` clips; other shapes (the last, short batch) run eagerly. The graph reads the
    model's parameters and buffers where they live, and the optimizer, weight averaging and
    checkpoint loading all write them in place, so one capture serves the whole phase.

    Before it is used, the replay of the capture batch is checked against an eager forward of
    the same batch; a capture that fails or disagrees evaluates eagerly, saying why, unless
    `strict` (trainer.cuda_graphs=true)."""

    def __init__(self, model: nn.Module, autocast, log=print, strict: bool = False,
                 rows: int | None = None):
        super().__init__()
        self.model = model
        self.autocast, self.log, self.strict, self.rows = autocast, log, strict, rows
        self.graph = self.static_in = self.static_out = None
        self.eager = False  # the capture failed or disagreed

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.graph is None and not self.eager and self.rows in (None, len(inputs)):
            self._capture(inputs)
        if self.graph is None or inputs.shape != self.static_in.shape:
            return self.model(inputs)
        self.static_in.copy_(inputs)
        self.graph.replay()
        return self.static_out.clone()  # the next replay overwrites the graph's output

    def _capture(self, inputs: torch.Tensor) -> None:
        name = type(self.model).__name__
        try:
            self.static_in = inputs.detach().clone()
            with torch.cuda.device(inputs.device), self.autocast():
                side = torch.cuda.Stream()  # warm-up off the main stream, as capture needs
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):  # cuBLAS handles, lazy initialization
                        eager = self.model(self.static_in)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                # thread_local: a loader's pin-memory thread may allocate during the capture
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    self.static_out = self.model(self.static_in)
                graph.replay()
            if not replay_agrees(self.static_out, eager):
                raise RuntimeError("its replay disagrees with the eager forward of the same "
                                   "batch")
        except (RuntimeError, AssertionError, ValueError) as err:  # ValueError: not a CUDA input
            if self.strict:
                raise RuntimeError(f"trainer.cuda_graphs=true: capturing {name}'s evaluation "
                                   f"forward failed: {err}") from err
            self.eager, self.graph = True, None
            self.static_in = self.static_out = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.log(f"cuda graphs: capturing {name}'s evaluation forward failed "
                     f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); this "
                     "phase evaluates eagerly (trainer.cuda_graphs=false skips the attempt)")
            return
        self.graph = graph
        self.log(f"cuda graphs: evaluation batches of shape {tuple(inputs.shape)} replay a "
                 "captured forward")


def eval_model(model: nn.Module, trainer, device: torch.device, distributed: bool, precision,
               rows: int, log) -> nn.Module:
    """What evaluation calls: the model, or its no-grad forward replayed as a CUDA graph where
    `trainer.cuda_graphs` allows (`rows`: the eval batch)."""
    obstacle = graph_obstacle(device, distributed, trainer.compile)
    if not use_graphs(trainer.cuda_graphs, obstacle):
        return model
    return GraphedEval(model, lambda: precision.autocast(cache=False), log,
                       strict=trainer.cuda_graphs is True, rows=rows)
