"""CNN14 (Kong et al., PANNs, TASLP 2020), the CNN rows of the paper's Table 1.

The architecture of PANNs' `pytorch/models.py` (qiuqiangkong/audioset_tagging_cnn), class
`Cnn14`, with its parameter names, so its published checkpoints (`Cnn14_mAP=0.431.pth`, a dict
whose "model" entry holds them) load by key: `bn0` over the 64 mel bins, six `conv_block<k>`
(two 3x3 conv + batch norm + ReLU, 2x2 average pooling, the last one 1x1), dropout 0.2 after
each, the mean over frequency, max + mean over time, dropout 0.5, `fc1` with ReLU and the
`fc_audioset` head. The log-mel comes from c2f's frontend (`model.features`, PANNs' values in
conf/model/cnn14.yaml), so the checkpoints' `spectrogram_extractor` / `logmel_extractor`
buffers are not needed; PANNs' SpecAugmentation (two time stripes of up to 64 frames, two
frequency stripes of up to 8 bins, zeroed after bn0) runs here in training, its time width
divided by the phase's C. The output is logits: PANNs' sigmoid is in c2f's BCE loss.

Convolutions do not depend on the input length, so a phase transition moves every weight as it
is; time pooling by C (Table 1's "Pool2", Liu et al. ICASSP 2023) and Fshift shorten the input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2f.compression import Compression, PhaseInput
from c2f.models.augment import spec_augmentation
from c2f.models.mixup import BatchMix
from c2f.models.registry import ModelFamily, load_by_names, register_model
from c2f.spec import ConfigError, ModelSpec

PANNS_CHANNELS = (64, 128, 256, 512, 1024, 2048)  # models.py Cnn14: conv_block1..6
DOWNSAMPLE = 32  # five 2x2 poolings


class ConvBlock(nn.Module):
    """PANNs' ConvBlock: (3x3 conv, batch norm, ReLU) twice, then average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        nn.init.xavier_uniform_(self.conv1.weight)  # models.py init_layer
        nn.init.xavier_uniform_(self.conv2.weight)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class Cnn14(nn.Module):
    """PANNs' Cnn14 on a log-mel [batch, frames, mel] -> logits."""

    def __init__(self, *, num_mel_bins: int, num_classes: int,
                 channels: tuple[int, ...] = PANNS_CHANNELS, time_drop: int = 64,
                 freq_drop: int = 8):
        super().__init__()
        self.time_drop, self.freq_drop = time_drop, freq_drop
        self.bn0 = nn.BatchNorm2d(num_mel_bins)
        widths = (1, *channels)
        for k in range(6):
            setattr(self, f"conv_block{k + 1}", ConvBlock(widths[k], widths[k + 1]))
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.fc_audioset = nn.Linear(channels[-1], num_classes)
        for layer in (self.fc1, self.fc_audioset):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, spec: torch.Tensor, mix: BatchMix | None = None) -> torch.Tensor:
        x = spec.unsqueeze(1)  # [B, 1, time, mel]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        if self.training:  # models.py Cnn14: spec_augmenter
            x = spec_augmentation(x, self.time_drop, self.freq_drop)
        if self.training and mix is not None:  # models.py Cnn14: do_mixup after SpecAugment
            x = mix.inputs(x)
        for k in range(6):
            block = getattr(self, f"conv_block{k + 1}")
            x = block(x, (2, 2) if k < 5 else (1, 1))
            x = F.dropout(x, p=0.2, training=self.training)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu_(self.fc1(x))
        return self.fc_audioset(x)


@register_model("cnn14")
class Cnn14Family(ModelFamily):
    """CNN14: time compression of its input (Fshift, average or max pooling), any C."""

    batch_mixup = True  # PANNs mixes log-mels of batch pairs inside the model (models.py)
    reads = frozenset({"channels"})

    def check(self, spec: ModelSpec, compression: str, phase: PhaseInput, num_mel_bins: int,
              c: int) -> None:
        if spec.features is None:
            raise ConfigError("`model.features`: CNN14 needs its log-mel settings (PANNs': "
                              "conf/model/cnn14.yaml)")
        if spec.channels is not None and len(spec.channels) != 6:
            raise ConfigError(f"`model.channels`: CNN14 has six conv blocks, got "
                              f"{list(spec.channels)}")
        if phase.model_frames < DOWNSAMPLE or num_mel_bins < DOWNSAMPLE:
            raise ConfigError(
                f"CNN14 pools time and frequency 32-fold: it needs at least 32 frames and 32 "
                f"mel bins, got {phase.model_frames} frames at C = {c} ({compression}) and "
                f"{num_mel_bins} bins; raise dataset.target_length or lower schedule.c")

    def build(self, spec: ModelSpec, *, num_classes: int, num_mel_bins: int, frames: int,
              patch: tuple[int, int], c: int = 1) -> Cnn14:
        return Cnn14(num_mel_bins=num_mel_bins, num_classes=num_classes,
                     channels=tuple(spec.channels or PANNS_CHANNELS),
                     time_drop=64 // c)  # / C: its duration kept (c2f's choice; paper silent)

    def load_pretrained(self, model: Cnn14, spec: ModelSpec, compression: Compression
                        ) -> list[str]:
        """A PANNs checkpoint ({"model": state} or a bare state dict) by its key names; the
        log-mel extractors' buffers are skipped and a head of another size stays at init."""
        return load_by_names(model, spec.pretrained, ("model",), ("module.",),
                             "PANNs' names: bn0.*, conv_block1.conv1.weight, fc1.*, ...",
                             heads=("fc_audioset.",), preset="model=cnn14 for PANNs' Cnn14",
                             inputs=("bn0.",))
