"""What a phase reads: the run's prepared data, and per phase its frontend, datasets, sampler
and loaders, built once so that loader workers live for the whole phase."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Subset

from c2f.data.dataset import EpochKeys, SpectrogramDataset, collate_skipping
from c2f.data.device_waves import DeviceWaves
from c2f.data.feature_cache import FeatureCache, cache_key, table_bytes
from c2f.data.frontend import FeatureSettings, Frontend
from c2f.data.manifest import Manifest
from c2f.data.sampling import Draw
from c2f.data.wave_cache import WaveCache, cache_splits, wave_bytes
from c2f.spec import TrainerSpec
from c2f.train.distributed import ShardedShuffle, World, eval_indices, loader_workers
from c2f.train.stopping import loader_guard, starting_workers


@dataclass(frozen=True)
class DataBundle:
    """The run's data, prepared once: checked manifests, feature settings, cached clips."""

    train: Manifest
    eval: Manifest
    settings: FeatureSettings
    waves: dict[str, WaveCache] | None = None  # decoded clips per split, when cached
    features: dict[tuple, FeatureCache] = field(default_factory=dict)  # shared by phases
    device_waves: dict[str, DeviceWaves] = field(default_factory=dict)  # shared by phases


def data_bundle(train: Manifest, evaluation: Manifest, settings: FeatureSettings,
                trainer: TrainerSpec, progress: bool) -> DataBundle:
    """The run's data, with every clip decoded once when `trainer.cache_audio` says so."""
    waves = cache_splits(trainer.cache_audio, {"train": train, "eval": evaluation},
                         settings.sample_rate, loader_workers(trainer.num_workers), progress,
                         worker_init=loader_guard(), starting=starting_workers)
    return DataBundle(train, evaluation, settings, waves)


class WorkersStartBlocked(DataLoader):
    """A DataLoader whose workers start with the stop signals blocked (`starting_workers`):
    a SLURM signal to every process of the job step, coming as they start, is theirs to
    ignore rather than what ends them."""

    def __iter__(self):
        with starting_workers():
            return super().__iter__()


@dataclass
class PhaseData:
    """One phase's datasets and loaders, built once: workers live for the whole phase."""

    frontend: Frontend
    train_set: SpectrogramDataset
    train_keys: EpochKeys
    order: ShardedShuffle
    train: DataLoader
    eval: DataLoader
    device: torch.device
    features: dict[str, FeatureCache] | None = None  # per split, when fbanks are cached
    mixing: DeviceWaves | None = None  # training clips on the device, mixed there
    eval_batches_everywhere: int = 0  # eval batches every rank has (its smallest shard's)

    def inputs(self, batch: dict, train: bool, cached: bool = True) -> torch.Tensor:
        """The model input of a batch, on the device (the device frontend runs here). Without
        `cached` it is made from the batch's own waveforms, whatever the phase keeps."""
        non_blocking = self.device.type == "cuda"

        def moved(key: str) -> torch.Tensor:
            # asynchronous: one blocking copy per step would make the host wait for the GPU
            # to drain before it launches the next step
            return batch[key].to(self.device, non_blocking=non_blocking)
        masks, noise, roll = (moved("masks"), moved("noise"), moved("roll")) if train else \
            (None, None, None)
        table = (self.features or {}).get("train" if train else "eval") if cached else None
        if table is not None:
            spec = table.rows(batch["index"])
            return self.frontend.augment(spec.to(self.device), masks, noise, roll)
        if cached and train and self.mixing is not None:
            waves = self.mixing.mixed(self.frontend, batch["index"], batch["partner"],
                                      batch["lam"])
            return self.frontend.batch(*waves, masks, noise, roll)
        return self.frontend.batch(moved("input"), moved("length"), moved("offset"), masks,
                                   noise, roll)


def frontend_on_device(setting: str) -> bool:
    """`trainer.frontend`: device or worker; auto picks the device frontend, faster on CUDA
    and on CPU alike (bench/results_epoch.md, bench/results_gpu.md)."""
    return setting in ("auto", "device")


def device_inputs(setting: bool | str, frontend: Frontend, data: DataBundle,
                  device: torch.device) -> tuple[dict[str, FeatureCache], DeviceWaves | None]:
    """`trainer.cache_features`: what a phase keeps on the training device when the clips are
    cached and the frontend is on the device. A split whose fbanks never change (evaluation;
    training without waveform mixup) keeps its prepared fbanks; with waveform mixup the
    training clips themselves are kept and mixed there (c2f/data/device_waves.py). The host
    then sends clip indices, mix draws and masks, never a waveform. auto: tables on CPU, where
    the fbank costs, and on a GPU when they take at most an eighth of its memory; mixing on a
    GPU when the clips fit in that eighth too (on CPU the host's own mixing is faster:
    bench/results_mixup.md)."""
    if not (setting and data.waves and frontend.on_device):
        return {}, None
    mixup = frontend.settings.mixup > 0
    splits = [split for split in data.waves if not (mixup and split == "train")]
    mixing = mixup and (setting is True or device.type == "cuda")
    if setting == "auto" and device.type != "cpu":
        if device.type != "cuda":
            return {}, None
        budget = torch.cuda.get_device_properties(device).total_memory / 8
        need = sum(table_bytes(data.waves[split], frontend) for split in splits)
        if need > budget:
            return {}, None
        mixing = mixing and need + wave_bytes(data.waves["train"]) <= budget
    tables = {split: data.features.setdefault(cache_key(split, frontend),
                                              FeatureCache(data.waves[split], frontend, device))
              for split in splits}
    if mixing and "train" not in data.device_waves:  # built once, shared by the phases
        data.device_waves["train"] = DeviceWaves(data.waves["train"], device)
    return tables, data.device_waves["train"] if mixing else None


def build_phase_data(frontend: Frontend, data: DataBundle, *, seed: int, world: World,
                     device: torch.device, batch_size: int, eval_batch_size: int,
                     num_workers: int | str, draw: Draw | None,
                     cache_features: bool | str = "auto") -> PhaseData:
    workers = loader_workers(num_workers)
    if data.waves is not None and frontend.on_device:
        # clips are in memory and the fbank runs on the device: a worker would only add the
        # shared-memory round trip of every batch (bench/gpu_runs/README.md)
        workers = 0

    def loader(dataset, size: int, sampler=None) -> DataLoader:
        # worker seeds from a generator of its own: making an iterator takes nothing from the
        # training's RNG (a persistent loader makes its first in a phase's first epoch only,
        # a run resumed mid-phase in its first; items are seeded by themselves)
        return WorkersStartBlocked(dataset, batch_size=size, sampler=sampler,
                                   collate_fn=collate_skipping, num_workers=workers,
                                   persistent_workers=workers > 0,
                                   pin_memory=device.type == "cuda",
                                   worker_init_fn=loader_guard() if workers else None,
                                   generator=torch.Generator().manual_seed(seed))

    def dataset(split: str, manifest: Manifest, train: bool) -> SpectrogramDataset:
        waves = data.waves[split] if data.waves else None
        return SpectrogramDataset(manifest, frontend, train=train, seed=seed, waves=waves)

    train_set = dataset("train", data.train, True)
    order = ShardedShuffle(len(train_set), 0, world, draw)
    keys = EpochKeys(order)
    eval_set = dataset("eval", data.eval, False)
    shard = Subset(eval_set, eval_indices(len(eval_set), world))
    last_rank = World(world.size - 1, world.size)  # holds the smallest shard
    smallest = -(-len(eval_indices(len(eval_set), last_rank)) // eval_batch_size)
    tables, mixing = device_inputs(cache_features, frontend, data, device)
    train_set.waveforms = "train" not in tables and mixing is None
    eval_set.waveforms = "eval" not in tables
    return PhaseData(frontend, train_set, keys, order, loader(train_set, batch_size, keys),
                     loader(shard, eval_batch_size), device, tables or None, mixing, smallest)
