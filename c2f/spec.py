"""Typed run specification, built once from the resolved Hydra config.

Inner code never sees a DictConfig: it gets these frozen dataclasses. Every check that can
fail before training lives here or in `plan.py`, and names the offending config key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2f.spec_types import (  # noqa: F401  (ConfigError stays importable from c2f.spec)
    ConfigError,
    build_dataclass,
    build_nested,
    matches,
    with_frozen_options,
)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str = "builtin"  # builtin | manifest
    train_manifest: str | tuple[str, ...] | None = None  # several: joined (pretraining)
    eval_manifest: str | None = None
    labels_csv: str | None = None
    prepared: str | None = None  # a prepared folder whose prepared.json fills ??? keys
    builtin: dict = field(default_factory=dict)
    num_classes: int = 11
    multilabel: bool = False
    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 256
    frame_shift_ms: float = 10.0
    norm_mean: float | None = None  # None: computed on the training set and cached
    norm_std: float | None = None
    freqm: int = 0
    timem: int = 0
    mixup: float = 0.0
    noise: bool = False  # AST's --noise: fbank noise and a roll in time (training only)
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    on_bad_audio: str = "fail"  # fail | skip
    loss: str = "ce"  # ce | bce (AST's --loss CE | BCE)
    # false | true (AST's weighted draw) | classes (PANNs' and HTS-AT's): c2f/data/sampling.py
    balanced_sampler: bool | str = False
    metric: str = "acc"  # acc | mAP
    fold: int | None = None  # cross-validation fold (ESC-50: 1-5); the preset's manifests use it
    digest: str | None = None  # the bytes of its manifests and label CSV (c2f/data/identity.py),
    # set before the spec is built: part of the run's id, where the paths are not


@dataclass(frozen=True)
class ModelFeatures:
    """A model's own input features, replacing the dataset's 16 kHz kaldi fbank: PANNs' and
    HTS-AT's log-mel (torchlibrosa: periodic Hann STFT, centered with reflect padding, power
    spectrum, librosa's Slaney mel filters, 10 log10(max(x, 1e-10)))."""

    kind: str = "logmel"
    sample_rate: int = 32000
    num_mel_bins: int = 64
    window: int = 1024  # STFT window and FFT size, in samples; the hop is dataset.frame_shift_ms
    fmin: float = 50.0
    fmax: float = 14000.0
    normalize: bool = False  # dataset mean/std normalization (AST's); PANNs uses its own bn0


@dataclass(frozen=True)
class BatchMixup:
    """`model.batch_mixup`: mixup inside the model, across the batch, after its bn0 and
    SpecAugment (PANNs', HTS-AT's; c2f/models/mixup.py), instead of AST's waveform mixup."""

    pairing: str = "adjacent"  # adjacent: clip 2i with 2i+1 (PANNs) | flipped: i with B-1-i
    alpha: float = 1.0  # lambda ~ Beta(alpha, alpha)
    mix_targets: bool = True  # targets mixed with the same weights (PANNs) or kept (HTS-AT)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: str = "ast"
    patch: tuple[int, int] = (16, 16)
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    dist_token: bool = False
    drop_path: float = 0.0
    pretrained: str | None = None  # local timm/AST checkpoint; never downloaded
    require_pretrained: bool = False  # fail at plan time when `pretrained` is not given
    pretrained_grid: tuple[int, int] | None = None  # its (freq, time) token grid if not square
    channels: tuple[int, ...] | None = None  # CNN widths (CNN14: six conv blocks)
    depths: tuple[int, ...] | None = None  # blocks per stage of a hierarchical model (HTS-AT)
    heads: tuple[int, ...] | None = None  # attention heads per stage (HTS-AT)
    chunk: int | None = None  # HTS-AT: frames per folded chunk (its spec_size, 256)
    pool: str = "prefix"  # AST: head on the mean of the prefix tokens (AST's) or of the patch
    # tokens ("tokens", SSAST's ft_avgtok)
    features: ModelFeatures | None = None  # the model's own features; None: AST's (dataset's)
    batch_mixup: BatchMixup | None = None  # the model's own mixup (CNN14, HTS-AT); None: none
    # a model family's own keys (`model.options: {hidden: 64}`), read as its `options` dataclass
    # (`ModelFamily.own_options`; spec_types.with_frozen_options)
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class CompressionSpec:
    name: str
    # a method's own keys (`compression.options: {offset: 1}`), read as its `options` dataclass
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class SwitchSpec:
    """schedule=adaptive: when each non-final phase ends (c2f/train/switching.py)."""

    rule: str = "plateau"  # plateau | budget
    patience: int = 2  # epochs without a gain of min_delta (plateau); the slope window (budget)
    min_delta: float = 0.0  # in the metric's units (0.01 = one accuracy point)
    min_epochs: int = 1  # every phase trains at least this many epochs
    max_fraction: float = 0.5  # and at most this fraction of the epoch budget (the cap)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    c: int = 1
    phases: tuple[int, ...] | None = None  # explicit C per phase, e.g. (8, 4, 2, 1)
    initial_fraction: float = 0.25  # the initial phases' share of the epoch budget, split evenly
    final_epochs: int | None = None  # None: the final phase fills the budget
    steps: tuple[int, ...] | None = None  # optimizer steps of each phase (pretraining)
    switch: SwitchSpec | None = None  # adaptive phase lengths (schedule=adaptive)


@dataclass(frozen=True)
class OptimSpec:
    name: str = "adam"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 5e-7
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 0
    warmup_stairs: int | None = None  # None: the rate rises at every step; N: in N stairs
    # from 0, as AST raises it (src/traintest.py: lr * step / 1000 at every 50th step, N = 20)
    scheduler: str = "multistep"  # multistep | constant | cosine | epoch_scales
    scales: tuple[float, ...] | None = None  # epoch_scales: lr factor of each phase epoch (the
    # last repeats), as HTS-AT's LambdaLR
    milestones_start: int = 2
    milestones_step: int = 1
    gamma: float = 0.5
    grad_clip: float | None = None
    eps: float = 1e-8  # Adam's epsilon (torch's default, as AST and PANNs use it)
    amsgrad: bool = False  # PANNs: Adam(amsgrad=True)


@dataclass(frozen=True)
class AverageSpec:
    """Weight averaging of final-phase epoch models (AST: epochs; HTS-AT: top_k)."""

    mode: str = "none"  # none | epochs | top_k
    start: int = 1  # first global epoch (1-based) that may be averaged, as AST's wa_start
    end: int | None = None  # last one, as AST's wa_end; None = the run's last epoch
    k: int = 15  # top_k: how many of the best epochs
    # top_k: evaluations per epoch whose models are candidates, at even steps (the last at the
    # epoch's end; other modes ignore it); HTS-AT evaluates every 0.1 epoch (main.py
    # val_check_interval=0.1): 10
    evals_per_epoch: int = 1


@dataclass(frozen=True)
class TrainerSpec:
    device: str = "cpu"
    num_workers: int | str = 0  # a count, or "auto": the job's CPUs less one
    threads: int | None = None
    dry_run: bool = False
    progress: bool = True
    max_steps_per_epoch: int | None = None
    keep_checkpoints: str = "last"  # last | all
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (c2f/train/precision.py)
    eval_precision: str = "fp32"  # fp32 (AST's validate) | train: the training precision
    frontend: str = "auto"  # auto | device | worker: where fbank + SpecAugment run
    cache_audio: bool | str = "auto"  # keep decoded clips in memory: auto | true | false
    cache_features: bool | str = "auto"  # fbank tables; mixup clips on the device: auto|true|false
    compile: bool | str = False  # torch.compile the training model: false | true | a mode
    cuda_graphs: bool | str = "auto"  # replay the training step as CUDA graphs: auto|true|false
    wait_for_lock: bool = False  # another process trains this run: wait for it (else leave)
    micro_batch: int | None = None  # examples per forward; the batch's gradients accumulate
    checkpoint_minutes: float | None = 30.0  # also checkpoint inside an epoch this often


@dataclass(frozen=True)
class LoggerSpec:
    mode: str = "offline"  # offline | online | disabled
    project: str = "c2f"
    entity: str | None = None
    tags: tuple[str, ...] = ()
    log_every_steps: int = 20  # training loss and lr to W&B every N optimizer steps (0: never)


@dataclass(frozen=True)
class PretrainSpec:
    """Self-supervised pretraining instead of classification: SSAST's masked spectrogram patch
    modeling (c2f/models/ssast.py), phases measured in optimizer steps (schedule.steps)."""

    objective: str = "ssast"  # ssast: joint InfoNCE + 10 x MSE (SSAST's pretrain_joint)
    masked: int = 400  # masked patches per 512, scaled with the patch count at each C
    cluster: int = 3  # SSAST's cluster_factor: clusters of 3x3 .. 5x5 patches
    eval_every: int = 4000  # steps between evaluations and checkpoints (SSAST's epoch_iter)
    eval_clips: int = 200  # eval clips the masked-patch accuracy is measured on
    lr_patience: int = 2  # SSAST: ReduceLROnPlateau(mode max on eval acc, patience 2,
    lr_factor: float = 0.5  # factor 0.5)


@dataclass(frozen=True)
class RunSpec:
    dataset: DatasetSpec
    model: ModelSpec
    compression: CompressionSpec
    schedule: ScheduleSpec
    optim: OptimSpec
    average: AverageSpec
    trainer: TrainerSpec
    logger: LoggerSpec
    seed: int
    group: str
    data_dir: Path
    runs_dir: Path
    semantic: dict  # the config that names the run (hashed into its id)
    pretrain: PretrainSpec | None = None  # set: a pretraining run (SSAST), not classification

    @property
    def run_id(self) -> str:
        return config_hash(self.semantic)

    @property
    def model_features(self) -> ModelFeatures | None:
        """The model's own feature settings, or None for the dataset's (AST's)."""
        return self.model.features

    @property
    def sample_rate(self) -> int:
        """The rate audio is decoded at: the model's when it has its own features."""
        own = self.model_features
        return own.sample_rate if own else self.dataset.sample_rate

    @property
    def num_mel_bins(self) -> int:
        """Mel bins of the model's input."""
        own = self.model_features
        return own.num_mel_bins if own else self.dataset.num_mel_bins

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.group / self.run_id


# torch.compile's modes (`reduce-overhead` = CUDA graphs, for steps bound by kernel launches)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# the modes that capture CUDA graphs themselves; c2f's graphs (trainer.cuda_graphs) wrap others
SELF_GRAPHING_COMPILE = ("reduce-overhead", "max-autotune")

# Keys that do not change what a run computes: they are left out of its identity.
NON_SEMANTIC = {
    "trainer": {"device", "num_workers", "threads", "dry_run", "progress", "keep_checkpoints",
                "precision", "eval_precision", "frontend", "cache_audio", "cache_features",
                "compile", "cuda_graphs", "wait_for_lock", "micro_batch", "checkpoint_minutes"},
    # where the data lives is not what it is: moving a dataset keeps its run ids
    "dataset": {"train_manifest", "eval_manifest", "labels_csv", "prepared"},
    "model": {"require_pretrained"},
    "logger": None,
    "paths": None,
    "group": None,
    "hydra": None,
}


# Keys added after runs existed: at these values they are left out of a run's identity, so a
# run made before the key existed keeps its id, and resumes, under a newer c2f.
NEUTRAL_DEFAULTS = {"dataset": {"noise": False}, "optim": {"warmup_stairs": None},
                    "average": {"evals_per_epoch": 1},
                    "model": {"batch_mixup": None, "options": {}},
                    "compression": {"options": {}}}


def config_hash(semantic: Mapping[str, Any], length: int = 10) -> str:
    """Short stable hash of a JSON-able config."""
    blob = json.dumps(semantic, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


def semantic_config(cfg: Mapping[str, Any]) -> dict:
    """The part of a resolved config that defines the run's results."""
    out = {}
    for key, value in cfg.items():
        if key in NON_SEMANTIC and NON_SEMANTIC[key] is None:
            continue
        if key in NON_SEMANTIC and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in NON_SEMANTIC[key]}
        neutral = NEUTRAL_DEFAULTS.get(key, {})
        if neutral and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in neutral or v != neutral[k]}
        out[key] = value
    return out


def pretraining_run_id(given: Any, resolved: str | None) -> str | None:
    """The id of the run `model.pretrained=pretrain:<phases>` resolved to; None otherwise."""
    if not (isinstance(given, str) and given.startswith("pretrain:") and resolved
            and resolved != given):
        return None
    return Path(resolved).parents[1].name  # <run>/ckpt/last.pt


def with_pretraining_run(semantic: dict, given: Any, run_id: str | None) -> dict:
    """`model.pretrained=pretrain:<phases>` names whichever pretraining run has those phases
    now: the run's id (`run_id`) joins the run's identity, so that fine-tuning from a new
    pretraining run is a new run, not "already finished" with the old weights. A run folder's
    stored config is hashed with the id its plan.json recorded (c2f/train/job.py)."""
    if run_id is None or not (isinstance(given, str) and given.startswith("pretrain:")):
        return semantic
    return {**semantic, "model": {**semantic["model"], "pretrained": f"{given} ({run_id})"}}


def build_model_spec(node: Any) -> ModelSpec:
    """ModelSpec with `features` and `batch_mixup` (hashable) dataclasses and `options` frozen;
    lists are tuples. A preset must say its architecture: without `arch` it would be an AST."""
    if isinstance(node, Mapping) and "name" in node and "arch" not in node:
        raise ConfigError(f"`model.arch` is missing: the model preset {node['name']!r} "
                          "(conf/model/<preset>.yaml) needs a line `arch: <name>`, the name its "
                          "family is registered under (@register_model), e.g. `arch: ast`")
    return build_nested(ModelSpec, with_frozen_options(node, "model"), "model",
                         features=ModelFeatures, batch_mixup=BatchMixup)


TOP_LEVEL = ("seed", "group", "pretrain", "hydra")  # besides the groups


def _check_top_level(cfg: Mapping[str, Any], groups: tuple[str, ...]) -> None:
    """A top-level key c2f does not read (`+seeed=1`, `+compresion=fshift`) would only change
    the run's id: refuse it, naming the key it looks like."""
    known = (*groups, *TOP_LEVEL)
    unknown = sorted(str(key) for key in cfg if key not in known)
    if not unknown:
        return
    import difflib

    guesses = [f"`{key}` (did you mean `{close[0]}`?)" if (close := difflib.get_close_matches(
        key, known, n=1)) else f"`{key}`" for key in unknown]
    raise ConfigError(f"unknown top-level key(s) {', '.join(guesses)}: c2f reads "
                      f"{', '.join(sorted(known[:-1]))}; a group's keys are set as "
                      "group.key=value, and `+` adds a key c2f would ignore")


def build_spec(cfg: Mapping[str, Any]) -> RunSpec:
    """RunSpec from a resolved plain-dict config (OmegaConf.to_container(cfg, resolve=True))."""
    groups = ("dataset", "model", "compression", "schedule", "optim", "average", "trainer",
              "logger", "paths")
    for key in groups:
        if key not in cfg:
            raise ConfigError(f"missing config group `{key}`; pick one, e.g. `{key}=...`")
    _check_top_level(cfg, groups)
    if not matches(cfg.get("seed", 0), int):
        raise ConfigError(f"`seed`: takes an integer, got {cfg['seed']!r}")
    from c2f.run_refs import resolve_pretrained  # it raises this module's ConfigError

    paths = cfg["paths"]
    runs_dir = Path(paths["runs_dir"]).expanduser().absolute()
    model = build_model_spec(cfg["model"])
    model = dataclasses.replace(model, pretrained=resolve_pretrained(model.pretrained, runs_dir,
                                                                     strict=False))
    spec = RunSpec(
        dataset=build_dataclass(DatasetSpec, cfg["dataset"], "dataset"),
        model=model,
        compression=build_dataclass(CompressionSpec, with_frozen_options(cfg["compression"],
                                                                "compression"), "compression"),
        schedule=build_nested(ScheduleSpec, cfg["schedule"], "schedule",
                               switch=SwitchSpec),
        optim=build_dataclass(OptimSpec, cfg["optim"], "optim"),
        average=build_dataclass(AverageSpec, cfg["average"], "average"),
        trainer=build_dataclass(TrainerSpec, cfg["trainer"], "trainer"),
        logger=build_dataclass(LoggerSpec, cfg["logger"], "logger"),
        seed=cfg.get("seed", 0),
        group=str(cfg.get("group", "default")),
        data_dir=Path(paths["data_dir"]).expanduser().absolute(),
        runs_dir=runs_dir,
        semantic=with_pretraining_run(semantic_config(cfg), cfg["model"].get("pretrained"),
                                      pretraining_run_id(cfg["model"].get("pretrained"),
                                                         model.pretrained)),
        pretrain=build_dataclass(PretrainSpec, cfg["pretrain"], "pretrain") if "pretrain" in cfg
        else None,
    )
    from c2f.validate import validate  # checks of single values (c2f/validate.py)

    validate(spec)
    return spec
