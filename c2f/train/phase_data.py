"""What a phase reads: the run's prepared data, and per phase its frontend, datasets, sampler
and loaders, built once so that loader workers live for the whole phase."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Subset

from c2f.data.dataset import EpochKeys, SpectrogramDataset, collate_skipping
from c2f.data.feature_cache import FeatureCache, cache_key, table_bytes
from c2f.data.frontend import FeatureSettings, Frontend
from c2f.data.manifest import Manifest
from c2f.data.wave_cache import WaveCache, cache_splits
from c2f.spec import TrainerSpec
from c2f.train.distributed import ShardedShuffle, World, eval_indices, loader_workers


@dataclass(frozen=True)
class DataBundle:
    """The run's data, prepared once: checked manifests, feature settings, cached clips."""

    train: Manifest
    eval: Manifest
    settings: FeatureSettings
    waves: dict[str, WaveCache] | None = None  # decoded clips per split, when cached
    features: dict[tuple, FeatureCache] = field(default_factory=dict)  # shared by phases


def data_bundle(train: Manifest, evaluation: Manifest, settings: FeatureSettings,
                trainer: TrainerSpec, progress: bool) -> DataBundle:
    """The run's data, with every clip decoded once when `trainer.cache_audio` says so."""
    waves = cache_splits(trainer.cache_audio, {"train": train, "eval": evaluation},
                         settings.sample_rate, loader_workers(trainer.num_workers), progress)
    return DataBundle(train, evaluation, settings, waves)


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

    def inputs(self, batch: dict, train: bool, cached: bool = True) -> torch.Tensor:
        """The model input of a batch, on the device (the device frontend runs here)."""
        non_blocking = self.device.type == "cuda"

        def moved(key: str) -> torch.Tensor:
            # asynchronous: one blocking copy per step would make the host wait for the GPU
            # to drain before it launches the next step
            return batch[key].to(self.device, non_blocking=non_blocking)
        masks, noise, roll = (moved("masks"), moved("noise"), moved("roll")) if train else \
            (None, None, None)
        if cached and self.features:
            spec = self.features["train" if train else "eval"].rows(batch["index"])
            return self.frontend.augment(spec.to(self.device), masks, noise, roll)
        return self.frontend.batch(moved("input"), moved("length"), moved("offset"), masks,
                                   noise, roll)


def frontend_on_device(setting: str) -> bool:
    """`trainer.frontend`: device or worker; auto picks the device frontend, faster on CUDA
    and on CPU alike (bench/results_epoch.md, bench/results_gpu.md)."""
    return setting in ("auto", "device")


def feature_tables(setting: bool | str, frontend: Frontend, data: DataBundle,
                   device: torch.device) -> dict[str, FeatureCache] | None:
    """`trainer.cache_features`: prepared fbanks kept per split, on the training device, when
    the clips are cached, the frontend is on the device and there is no mixup. auto: on CPU,
    where the fbank costs, and on a GPU when the phase's tables take at most an eighth of its
    memory: the host then sends clip indices and masks, never a waveform."""
    if not (setting and data.waves and frontend.on_device and frontend.settings.mixup == 0):
        return None
    if setting == "auto" and device.type != "cpu":
        need = sum(table_bytes(waves, frontend) for waves in data.waves.values())
        if device.type != "cuda" or \
                need > torch.cuda.get_device_properties(device).total_memory / 8:
            return None
    tables = {}
    for split, waves in data.waves.items():
        key = cache_key(split, frontend)
        tables[split] = data.features.setdefault(key, FeatureCache(waves, frontend, device))
    return tables


def build_phase_data(frontend: Frontend, data: DataBundle, *, seed: int, world: World,
                     device: torch.device, batch_size: int, eval_batch_size: int,
                     num_workers: int | str, sample_weights: torch.Tensor | None,
                     cache_features: bool | str = "auto") -> PhaseData:
    workers = loader_workers(num_workers)
    if data.waves is not None and frontend.on_device:
        # clips are in memory and the fbank runs on the device: a worker would only add the
        # shared-memory round trip of every batch (bench/gpu_runs/README.md)
        workers = 0

    def loader(dataset, size: int, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=size, sampler=sampler,
                          collate_fn=collate_skipping, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=device.type == "cuda")

    def dataset(split: str, manifest: Manifest, train: bool) -> SpectrogramDataset:
        waves = data.waves[split] if data.waves else None
        return SpectrogramDataset(manifest, frontend, train=train, seed=seed, waves=waves)

    train_set = dataset("train", data.train, True)
    order = ShardedShuffle(len(train_set), 0, world, sample_weights)
    keys = EpochKeys(order)
    eval_set = dataset("eval", data.eval, False)
    shard = Subset(eval_set, eval_indices(len(eval_set), world))
    tables = feature_tables(cache_features, frontend, data, device)
    if tables:
        train_set.waveforms = eval_set.waveforms = False
    return PhaseData(frontend, train_set, keys, order, loader(train_set, batch_size, keys),
                     loader(shard, eval_batch_size), device, tables)
