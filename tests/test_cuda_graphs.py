"""`trainer.cuda_graphs` (c2f/train/graphs.py): which training steps and evaluation passes may
be graphed, what `auto` / `true` / `false` do with an obstacle, and the paths that never
capture. The capture itself needs CUDA: `make bench-gpu` checks it (bench/results_gpu.md,
section 2c: speed, and the same seeded epoch's loss with and without graphs; section 4d: the
same weights' eval loss from an eager and a graphed forward)."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from c2f.models import build_model
from c2f.models.mixup import draw_batch_mix
from c2f.plan import build_plan
from c2f.spec import BatchMixup, ConfigError
from c2f.track import RunDir
from c2f.tracker import Tracker
from c2f.train.graphs import (
    GraphedEval,
    GraphedModel,
    _Forward,
    draws_off_device,
    graph_obstacle,
    replay_agrees,
    use_graphs,
)
from c2f.train.loop import PhaseLoop
from tests.conftest import TINY, run_cli
from tests.test_models import TINY_MODELS
from tests.test_plan import spec_for

CUDA = torch.device("cuda")  # a device object only: nothing here runs on it


def tiny(arch: str) -> torch.nn.Module:
    return build_model(TINY_MODELS[arch], num_classes=5, num_mel_bins=64, frames=64,
                       patch=(16, 16))


def test_a_step_on_one_cuda_device_can_be_graphed_and_each_obstacle_is_named():
    """Whatever the model: batch norm and in-model mixup are graphed too (CNN14, HTS-AT)."""
    assert graph_obstacle(CUDA, False, False) is None
    assert "cpu" in graph_obstacle(torch.device("cpu"), False, False)
    assert "DDP" in graph_obstacle(CUDA, True, False)
    assert "trainer.compile=reduce-overhead" in graph_obstacle(CUDA, False, "reduce-overhead")
    assert "max-autotune" in graph_obstacle(CUDA, False, "max-autotune")
    # inductor's fused kernels without its own graphs: c2f's graphs launch them once a step
    for mode in (True, "default", "max-autotune-no-cudagraphs"):
        assert graph_obstacle(CUDA, False, mode) is None


def test_auto_graphs_where_it_can_true_fails_naming_the_obstacle_false_never_graphs():
    assert use_graphs("auto", None) and use_graphs(True, None)
    assert not use_graphs(False, None)
    assert not use_graphs("auto", "DDP overlaps ...")
    with pytest.raises(ConfigError, match=r"cuda_graphs=true.*no GPU here.*auto or false"):
        use_graphs(True, "no GPU here")


@pytest.mark.parametrize("overrides, message", [
    (["trainer.device=cpu"], "needs a CUDA device"),
    (["trainer.device=cuda", "trainer.compile=reduce-overhead"], "choose one")])
def test_cuda_graphs_true_fails_at_plan_time_when_the_config_rules_it_out(overrides, message):
    with pytest.raises(ConfigError, match=rf"trainer\.cuda_graphs.*{message}"):
        spec_for("trainer.cuda_graphs=true", *overrides)


def test_cuda_graphs_true_takes_a_compiled_model_whose_mode_leaves_graphs_to_c2f():
    """compile=default (true): inductor's fused kernels, replayed in c2f's graphs."""
    for mode in ("true", "default", "max-autotune-no-cudagraphs"):
        spec = spec_for("trainer.cuda_graphs=true", "trainer.device=cuda",
                        f"trainer.compile={mode}")
        assert spec.trainer.cuda_graphs is True


def test_run_py_with_cuda_graphs_true_on_a_cpu_machine_fails_before_any_data(tmp_path):
    """device=auto finds no GPU here: the job says so before it makes or reads a clip."""
    data = tmp_path / "data"
    proc = run_cli([*TINY, "logger=disabled", "trainer.cuda_graphs=true"], tmp_path / "runs",
                   data, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "trainer.cuda_graphs=true`: cannot graph the training step: training runs on cpu" \
        in proc.stderr
    assert not data.exists() and not (tmp_path / "runs").exists()


def test_device_cuda_without_a_gpu_fails_before_any_data(tmp_path):
    """`trainer.device=cuda` where no GPU is visible (none here, or hidden by
    CUDA_VISIBLE_DEVICES): a ConfigError naming the fix, not a driver traceback after the
    audio has been cached."""
    data = tmp_path / "data"
    proc = run_cli([*TINY, "logger=disabled", "trainer.device=cuda"], tmp_path / "runs", data,
                   check=False, env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "`trainer.device=cuda`: no GPU for local rank 0 here" in proc.stderr
    assert "trainer.device=auto" in proc.stderr and "Traceback" not in proc.stderr
    assert not data.exists() and not (tmp_path / "runs").exists()


def test_the_loop_trains_and_evaluates_eagerly_on_cpu_under_auto_and_refuses_true(tmp_path):
    spec = spec_for("trainer.device=cpu")
    run = RunDir(tmp_path / "run")
    tracker = Tracker("disabled", "", None, spec.run_id, "", run.path, {})
    model = tiny("ast")
    loop = PhaseLoop(spec, build_plan(spec), None, run, tracker)
    assert loop.trainable(model) is model and loop.evaluable(model) is model
    forced = replace(spec, trainer=replace(spec.trainer, cuda_graphs=True))  # device=auto, no GPU
    with pytest.raises(ConfigError, match="training runs on cpu"):
        PhaseLoop(forced, build_plan(forced), None, run, tracker).trainable(model)


def test_a_graphed_model_evaluates_eagerly_without_capturing():
    torch.manual_seed(0)
    model = tiny("ast")
    graphed = GraphedModel(model, lambda: torch.autocast("cpu", enabled=False), log=None)
    assert list(graphed.parameters()) == list(model.parameters())  # the optimizer's and clip's
    x = torch.randn(3, 64, 64)
    graphed.eval()
    assert not model.training
    torch.testing.assert_close(graphed(x), model(x), rtol=0, atol=0)
    assert graphed.shape is None  # nothing captured


def test_a_step_that_cannot_be_captured_trains_eagerly_saying_why_unless_strict():
    """Here the capture fails for want of a GPU; a model with a host sync in its forward fails
    the same way on one, and must not stop an `auto` run."""
    torch.manual_seed(0)
    model, said = tiny("ast"), []
    graphed = GraphedModel(model, lambda: torch.autocast("cpu", enabled=False), log=said.append)
    x = torch.randn(3, 64, 64)
    torch.testing.assert_close(graphed(x), model(x), rtol=0, atol=0)
    assert graphed.eager and "trains eagerly" in said[0] and "cuda_graphs=false" in said[0]
    graphed(torch.randn(3, 64, 64)).sum().backward()  # later steps: eager, no second attempt
    assert len(said) == 1 and model.head[1].weight.grad is not None
    strict = GraphedModel(tiny("ast"), lambda: torch.autocast("cpu", enabled=False),
                          strict=True)
    with pytest.raises(RuntimeError, match="cuda_graphs=true: capturing .* failed"):
        strict(x)


def test_forwards_outside_the_graphs_skip_the_compiled_wrapper():
    """trainer.compile=default under c2f's graphs: the capture check's two fp32, no-grad
    forwards on torch.compile's wrapper compiled the model a second time (a minute on an H200),
    and a short last batch would compile it for its shape. Here a counting stand-in for the
    wrapper (`_orig_mod`, as torch.compile's OptimizedModule)."""
    class Wrapper(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self._orig_mod, self.calls = model, 0

        def forward(self, x):
            self.calls += 1
            return self._orig_mod(x)

    said, wrapper = [], Wrapper(tiny("ast"))
    graphed = GraphedModel(wrapper, lambda: torch.autocast("cpu", enabled=False),
                           log=said.append)
    graphed(torch.randn(3, 64, 64))  # the check runs, then the capture fails (no GPU here)
    assert graphed.eager and wrapper.calls == 1  # the eager step alone, not the check's two
    assert "capturing AST's training step failed" in said[0]
    graphed.eager, graphed.shape = False, torch.Size((4, 64, 64))  # as if captured at 4 rows
    graphed(torch.randn(3, 64, 64))  # a short last batch: outside the graphs, not compiled
    assert wrapper.calls == 1


def test_graphs_are_captured_from_a_full_batch_not_from_a_short_first_one():
    """A first batch that lost a bad clip must not fix the graphs' shape for the whole phase."""
    said = []
    graphed = GraphedModel(tiny("ast"), lambda: torch.autocast("cpu", enabled=False),
                           log=said.append, rows=4)
    graphed(torch.randn(3, 64, 64))
    assert graphed.shape is None and not said  # no capture tried
    graphed(torch.randn(4, 64, 64))
    assert graphed.shape == (4, 64, 64) and len(said) == 1  # tried (and, here, fell back)


def test_a_replay_must_agree_with_the_eager_forward_of_its_batch():
    eager = torch.randn(8, 5) * 3
    assert replay_agrees(eager.clone(), eager)
    assert replay_agrees(eager.bfloat16(), eager)  # bf16 rounding of the same logits
    assert not replay_agrees(eager.roll(1, 0), eager)  # another batch's rows
    assert not replay_agrees(torch.zeros(8, 5), eager)  # a replay that wrote nothing
    broken = eager.clone()
    broken[0, 0] = float("nan")
    assert not replay_agrees(broken, eager)


def test_an_evaluation_that_cannot_be_captured_runs_eagerly_saying_why_unless_strict():
    torch.manual_seed(0)
    model, said = tiny("cnn14"), []
    model.eval()
    graphed = GraphedEval(model, lambda: torch.autocast("cpu", enabled=False), said.append,
                          rows=3)
    x = torch.randn(3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    graphed(torch.randn(2, 64, 64))  # a short first batch: no capture tried
    assert not said and graphed.graph is None and not graphed.eager
    out = graphed(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert not out.requires_grad
    assert graphed.eager and "evaluates eagerly" in said[0] and "cuda_graphs=false" in said[0]
    graphed(x)  # no second attempt
    assert len(said) == 1
    strict = GraphedEval(model, lambda: torch.autocast("cpu", enabled=False), strict=True)
    with pytest.raises(RuntimeError, match="cuda_graphs=true: capturing .*evaluation"):
        strict(x)


class _PythonRandomGain(torch.nn.Module):
    """A forward that scales its input by a gain drawn from Python's `random`, off any torch
    generator (a continuous draw: two never agree)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(2) * (0.5 + random.random())


def test_forwards_whose_random_draws_a_graph_would_freeze_are_found():
    """On CUDA the check resets the GPU's generator between two forwards; here the CPU's
    stands in for it where a model draws on the device (dropout), and a generator that is not
    reset stands in where it draws on the host (CNN14's DropStripes on torch's CPU generator,
    Python's random)."""
    torch.manual_seed(0)  # the draws, whatever ran before
    random.seed(0)
    device_rng = (torch.get_rng_state, torch.set_rng_state)
    not_the_device = (lambda: None, lambda state: None)
    x = torch.randn(4, 64, 64)
    dropout = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Flatten(),
                                  torch.nn.Linear(4096, 3))
    assert not draws_off_device(dropout.train(), x, device_rng)
    cnn14 = tiny("cnn14").train()
    assert draws_off_device(cnn14, x, not_the_device)  # its stripes: the CPU generator
    assert not draws_off_device(cnn14.eval(), x, not_the_device)  # no stripes in evaluation
    assert draws_off_device(_PythonRandomGain(), x, device_rng)
    assert not draws_off_device(tiny("ast").train(), x, not_the_device)  # AST draws nothing
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    draws_off_device(cnn14.train(), x, device_rng)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)  # generator untouched


def test_a_capture_leaves_batch_norm_where_one_eager_step_leaves_it():
    """The capture's random-draw check and warm-up run training forwards: batch norm's running
    statistics come back, in place (the graph reads them where they are), so the first step
    counts once. Here the capture then fails for want of a GPU and the step runs eagerly."""
    torch.manual_seed(0)
    model, twin = tiny("cnn14").train(), tiny("cnn14").train()
    twin.load_state_dict(model.state_dict())
    stats = model.bn0.running_mean
    pointer = stats.data_ptr()
    graphed = GraphedModel(model, lambda: torch.autocast("cpu", enabled=False), log=print)
    x = torch.randn(4, 64, 64)
    torch.manual_seed(1)
    out = graphed(x)
    torch.manual_seed(1)
    expected = twin(x)
    assert graphed.eager
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # the same stripes and dropout
    for (name, ours), theirs in zip(model.named_buffers(), twin.buffers()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=name)
    assert int(model.bn0.num_batches_tracked) == 1
    assert model.bn0.running_mean is stats and stats.data_ptr() == pointer


@pytest.mark.parametrize("arch, pairing", [("cnn14", "adjacent"), ("htsat", "flipped")])
def test_a_mixed_step_is_captured_with_its_weights_as_an_input(arch, pairing):
    """In-model mixup: what the graph captures takes each step's weights as a tensor input and
    mixes as the model does eagerly; the pairing is the run's. DropStripes draws on the
    device, so the check that keeps host draws out of graphs lets these models in."""
    torch.manual_seed(0)
    model = tiny(arch).train()
    mixup = BatchMixup(pairing=pairing)
    first, later = draw_batch_mix(mixup, 4, 3), draw_batch_mix(mixup, 4, 4)
    step = _Forward(model)
    step.mixing = first
    x = torch.randn(4, 64, 64)
    torch.manual_seed(1)
    captured = step(x, later.lam)
    torch.manual_seed(1)
    torch.testing.assert_close(captured, model(x, mix=later), rtol=0, atol=0)
    assert captured.shape[0] == (2 if pairing == "adjacent" else 4)
    assert not draws_off_device(step, (x, later.lam), (torch.get_rng_state, torch.set_rng_state))
    said = []
    graphed = GraphedModel(model, lambda: torch.autocast("cpu", enabled=False), said.append,
                           rows=4)
    torch.manual_seed(2)
    out = graphed(x, mix=later)  # the capture is tried with the mix (and fails here)
    torch.manual_seed(2)
    torch.testing.assert_close(out, model(x, mix=later), rtol=0, atol=0)
    assert graphed.step.mixing.pairing == pairing and "trains eagerly" in said[0]
