"""Checks of a RunSpec's single values, each naming its key and what it accepts; cross-group
shape checks live in plan.py."""
from __future__ import annotations

from c2f.spec import COMPILE_MODES, SELF_GRAPHING_COMPILE, ConfigError, RunSpec, SwitchSpec


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"`{key}`: {message}")


def validate(spec: RunSpec) -> None:
    """Checks of single values; cross-group shape checks live in plan.py."""
    d, m, o, s = spec.dataset, spec.model, spec.optim, spec.schedule
    _check(d.kind in ("builtin", "manifest"), "dataset.kind", f"{d.kind!r} is not builtin|manifest")
    if d.kind == "manifest":
        for k in ("train_manifest", "eval_manifest", "labels_csv"):
            _check(bool(getattr(d, k)), f"dataset.{k}",
                   "required for a manifest dataset: point it at your AST-format file "
                   f"(e.g. `dataset.{k}=/path/to/file`)")
    _check(d.metric in ("acc", "mAP"), "dataset.metric", f"{d.metric!r} is not acc|mAP")
    _check(d.multilabel or d.metric != "mAP", "dataset.metric",
           "mAP is computed for multi-label datasets only (dataset.multilabel=false here); use "
           "dataset.metric=acc, or dataset.multilabel=true if clips have several labels")
    _check(d.on_bad_audio in ("fail", "skip"), "dataset.on_bad_audio",
           f"{d.on_bad_audio!r} is not fail|skip")
    _check(d.loss in ("ce", "bce"), "dataset.loss", f"{d.loss!r} is not ce|bce")
    _check(isinstance(d.balanced_sampler, bool) or d.balanced_sampler == "classes",
           "dataset.balanced_sampler", f"{d.balanced_sampler!r} is not false|true|classes "
           "(true: AST's weighted draw; classes: one clip of each class in turn, as PANNs and "
           "HTS-AT)")
    _check(not (d.multilabel and d.loss == "ce"), "dataset.loss",
           "cross-entropy needs one label per clip, but dataset.multilabel=true; use "
           "dataset.loss=bce")
    _check(d.epochs >= 1, "dataset.epochs", f"must be >= 1, got {d.epochs}")
    _check(d.batch_size >= 1, "dataset.batch_size", f"must be >= 1, got {d.batch_size}")
    _check(d.target_length >= 1, "dataset.target_length", "must be >= 1")
    _check(d.eval_batch_size >= 1, "dataset.eval_batch_size",
           f"must be >= 1, got {d.eval_batch_size}")
    _check(d.sample_rate >= 1000, "dataset.sample_rate",
           f"in Hz (AST's data is 16000; other rates are resampled to it), got {d.sample_rate}")
    _check(d.num_mel_bins >= 1, "dataset.num_mel_bins", f"must be >= 1, got {d.num_mel_bins}")
    _check(d.frame_shift_ms > 0, "dataset.frame_shift_ms", f"must be > 0, got {d.frame_shift_ms}")
    bins, of = ((m.features.num_mel_bins, "model.features.num_mel_bins") if m.features
                else (d.num_mel_bins, "dataset.num_mel_bins"))
    _check(0 <= d.freqm <= bins, "dataset.freqm",
           f"a mask width in mel bins, 0..{bins} ({of}), got {d.freqm}")
    _check(0 <= d.timem <= d.target_length, "dataset.timem",
           f"a mask width in frames, 0..{d.target_length} (dataset.target_length), got {d.timem}")
    _check((d.norm_mean is None) == (d.norm_std is None), "dataset.norm_std",
           "give both norm_mean and norm_std, or neither (computed from the training set)")
    _check(d.norm_std is None or d.norm_std > 0, "dataset.norm_std", "must be > 0")
    _check(0.0 <= d.mixup <= 1.0, "dataset.mixup", f"a probability, got {d.mixup}")
    _check(isinstance(d.noise, bool), "dataset.noise", f"true or false, got {d.noise!r}")
    if m.features is not None:
        own = m.features
        _check(own.kind == "logmel", "model.features.kind", f"{own.kind!r} is not logmel")
        _check(0 <= own.fmin < own.fmax <= own.sample_rate / 2, "model.features.fmax",
               f"need 0 <= fmin < fmax <= sample_rate / 2, got {own.fmin}..{own.fmax}")
        _check(own.window >= 16 and own.num_mel_bins >= 1, "model.features.window",
               "window >= 16 samples and num_mel_bins >= 1")
    if m.batch_mixup is not None:
        mix = m.batch_mixup
        _check(mix.pairing in ("adjacent", "flipped"), "model.batch_mixup.pairing",
               f"{mix.pairing!r} is not adjacent|flipped")
        _check(mix.alpha > 0, "model.batch_mixup.alpha", f"must be > 0, got {mix.alpha}")
        _check(mix.mix_targets or mix.pairing == "flipped", "model.batch_mixup.mix_targets",
               "adjacent pairs halve the batch, so their targets must be mixed too")
        _check(d.mixup == 0, "dataset.mixup",
               f"{d.mixup:g} mixes waveforms, but model.batch_mixup mixes inside the model "
               "too; choose one (dataset.mixup=0, or model.batch_mixup=null)")
    if spec.pretrain is not None:
        pre = spec.pretrain
        _check(pre.objective == "ssast", "pretrain.objective", f"{pre.objective!r} is not ssast")
        _check(bool(spec.schedule.steps) and all(n >= 1 for n in spec.schedule.steps),
               "schedule.steps", "pretraining needs the optimizer steps of each phase, "
               "e.g. schedule.steps=[100000,500000]")
        _check(pre.eval_every >= 1 and pre.masked >= 1 and pre.eval_clips >= 1,
               "pretrain.eval_every", "eval_every, masked and eval_clips must be >= 1")
        _check(m.arch == "ast" and m.dist_token, "model.arch",
               "SSAST pretrains an AST with cls and distillation tokens (model.dist_token=true)")
    _check(d.fold is None or (isinstance(d.fold, int) and d.fold >= 1), "dataset.fold",
           f"a fold number >= 1 (ESC-50: 1-5), got {d.fold!r}")
    _check(min(m.embed_dim, m.depth, m.num_heads) >= 1, "model.depth",
           f"embed_dim, depth and num_heads must be >= 1, got {m.embed_dim}, {m.depth}, "
           f"{m.num_heads}")
    _check(m.mlp_ratio > 0 and 0 <= m.drop_path < 1, "model.drop_path",
           f"need mlp_ratio > 0 and 0 <= drop_path < 1, got {m.mlp_ratio}, {m.drop_path}")
    _check(spec.seed >= 0, "seed", f"must be >= 0, got {spec.seed}")
    _check(len(m.patch) == 2 and min(m.patch) >= 1, "model.patch",
           f"need [freq, time] >= 1, got {m.patch}")
    _check(m.pool in ("prefix", "tokens"), "model.pool", f"{m.pool!r} is not prefix|tokens")
    _check(m.arch != "ast" or m.embed_dim % m.num_heads == 0, "model.num_heads",
           f"embed_dim {m.embed_dim} is not divisible by num_heads {m.num_heads}")
    _check(o.name in ("adam", "adamw"), "optim.name", f"{o.name!r} is not adam|adamw")
    _check(o.scheduler in ("multistep", "constant", "cosine", "epoch_scales"),
           "optim.scheduler", f"{o.scheduler!r} is not multistep|constant|cosine|epoch_scales")
    _check(o.warmup_stairs is None or o.warmup_stairs >= 1, "optim.warmup_stairs",
           f"null (every step) or a count >= 1, got {o.warmup_stairs}")
    _check(o.scheduler != "epoch_scales" or bool(o.scales), "optim.scales",
           "epoch_scales needs optim.scales=[...], one factor per epoch (the last repeats)")
    _check(o.lr > 0, "optim.lr", "must be > 0")
    _check(o.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    _check(o.weight_decay >= 0 and o.eps > 0, "optim.weight_decay",
           f"need weight_decay >= 0 and eps > 0, got {o.weight_decay}, {o.eps}")
    _check(all(0 <= b < 1 for b in o.betas), "optim.betas", f"each in [0, 1), got {o.betas}")
    _check(o.gamma > 0 and o.milestones_step >= 1, "optim.gamma",
           f"need gamma > 0 and milestones_step >= 1, got {o.gamma}, {o.milestones_step}")
    _check(0 < s.initial_fraction < 1, "schedule.initial_fraction", "must be in (0, 1)")
    a = spec.average
    _check(a.mode in ("none", "epochs", "top_k"), "average.mode",
           f"{a.mode!r} is not none|epochs|top_k")
    _check(a.start >= 1 and (a.end is None or a.end >= a.start), "average.end",
           f"need 1 <= average.start <= average.end, got {a.start}..{a.end}")
    _check(a.k >= 1, "average.k", f"must be >= 1, got {a.k}")
    _check(a.evals_per_epoch >= 1, "average.evals_per_epoch",
           f"evaluations per epoch whose models average=top_k ranks: at least 1, got "
           f"{a.evals_per_epoch}")
    w = spec.trainer.num_workers
    _check(w == "auto" or (isinstance(w, int) and w >= 0), "trainer.num_workers",
           f"a count >= 0 or auto, got {w!r}")
    t = spec.trainer
    _check(t.device in ("auto", "cpu", "cuda"), "trainer.device",
           f"{t.device!r} is not auto|cpu|cuda (cuda: each process's local-rank GPU; "
           "CUDA_VISIBLE_DEVICES picks which)")
    _check(t.precision in ("auto", "fp32", "bf16", "fp16"), "trainer.precision",
           f"{t.precision!r} is not auto|fp32|bf16|fp16")
    _check(t.eval_precision in ("fp32", "train"), "trainer.eval_precision",
           f"{t.eval_precision!r} is not fp32|train")
    _check(t.frontend in ("auto", "device", "worker"), "trainer.frontend",
           f"{t.frontend!r} is not auto|device|worker")
    _check(t.cache_audio in (True, False, "auto"), "trainer.cache_audio",
           f"{t.cache_audio!r} is not auto|true|false")
    _check(t.compile in (True, False, *COMPILE_MODES), "trainer.compile",
           f"{t.compile!r} is not true|false|{'|'.join(COMPILE_MODES)}")
    _check(t.cuda_graphs in (True, False, "auto"), "trainer.cuda_graphs",
           f"{t.cuda_graphs!r} is not auto|true|false")
    if t.cuda_graphs is True:  # no GPU or DDP: at job start (job.py); a failed capture: at a phase
        _check(t.device != "cpu", "trainer.cuda_graphs",
               "true needs a CUDA device (trainer.device=cuda or auto); use auto or false")
        _check(t.compile not in SELF_GRAPHING_COMPILE, "trainer.cuda_graphs",
               f"true and trainer.compile={t.compile} both graph the step; choose one "
               "(trainer.compile=default fuses kernels under c2f's graphs)")
        _check(spec.pretrain is None, "trainer.cuda_graphs",
               "true: SSAST pretraining (-cn pretrain) trains eagerly; use auto or false")
    n = t.max_steps_per_epoch
    _check(n is None or n >= 1, "trainer.max_steps_per_epoch",
           f"steps of an epoch: a count >= 1 or null (every batch), got {n!r}")
    m = t.micro_batch
    _check(m is None or m >= 1,
           "trainer.micro_batch", f"examples per forward: a count >= 1 or null, got {m!r}")
    if m is not None and m < spec.dataset.batch_size:
        _check(spec.pretrain is None, "trainer.micro_batch",
               "SSAST pretraining (-cn pretrain) does not split its steps; leave it null")
        _check(t.cuda_graphs is not True, "trainer.micro_batch",
               "micro-batches accumulate gradients outside a graph, and "
               "trainer.cuda_graphs=true graphs whole steps; use trainer.cuda_graphs=auto")
    _check(t.checkpoint_minutes is None or t.checkpoint_minutes >= 0,
           "trainer.checkpoint_minutes", f"minutes >= 0 or null, got {t.checkpoint_minutes!r}")
    _check(t.cache_features in (True, False, "auto"), "trainer.cache_features",
           f"{t.cache_features!r} is not auto|true|false")
    _check(spec.logger.mode in ("offline", "online", "disabled"), "logger.mode",
           f"{spec.logger.mode!r} is not offline|online|disabled")
    _check(spec.logger.log_every_steps >= 0, "logger.log_every_steps",
           "a step count >= 0 (0: log epochs only)")
    if s.switch is not None:
        check_switch(s.switch)


def check_switch(w: SwitchSpec) -> None:
    _check(w.rule in ("plateau", "budget"), "schedule.switch.rule",
           f"{w.rule!r} is not plateau|budget")
    _check(isinstance(w.patience, int) and w.patience >= 1, "schedule.switch.patience",
           "epochs >= 1")
    _check(w.min_delta >= 0, "schedule.switch.min_delta", "a metric difference >= 0")
    _check(isinstance(w.min_epochs, int) and w.min_epochs >= 1, "schedule.switch.min_epochs",
           "epochs >= 1")
    _check(0 < w.max_fraction < 1, "schedule.switch.max_fraction",
           "a fraction of the epoch budget in (0, 1)")
