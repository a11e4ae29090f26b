"""HTS-AT (Chen et al., ICASSP 2022): a Swin-Tiny over the log-mel folded into an image, with
the token-semantic (TSCAM) head; the paper's Table 6 rows.

Follows RetroCirce/HTS-Audio-Transformer `model/htsat.py` (class HTSAT_Swin_Transformer,
"htsat.py" below) and its `config.py`, with its parameter names so that its checkpoints load by
key (`HTSAT_AudioSet_Saved_*.ckpt`: PyTorch Lightning's {"state_dict": {"sed_model.<name>"}}).

**Folding.** htsat.py cuts the 1024-frame log-mel [T, 64] into `T / 256` chunks of 256 frames
and stacks them along frequency: a 256 x 256 image for 10 s. Its `reshape_wav2img` first
stretches any shorter input back to 1024 frames (bicubic), so a coarse phase would cost as much
as a fine one. c2f folds whatever it gets: at C the input has 1024 / C frames, which make
4 / C chunks, an image of (64 * 4 / C) x 256 and a quarter of the tokens at C = 4 (16 x 64
patches instead of 64 x 64). Every stage keeps its depth; the grid shrinks in frequency only.
At C = 1 the model is htsat.py's, except that c2f pads 10 s to 1024 frames instead of
stretching 1001 frames to 1024.

**Windows.** htsat.py's 8 x 8 windows, each with a (2*8-1)^2 table of relative position
biases. Where a stage's grid is smaller than 8 along an axis (the deep stages of a coarse
phase: 2 x 8 at C = 4), the window shrinks along that axis only and reads the sub-block of the
same table that its offsets index; windows shift by 4 along each axis longer than 8 (htsat.py
sets shift 0 for both axes once either is <= 8, so at C = 1 the two agree). No weight depends on
the grid: patch kernels, bias tables, merges and the TSCAM convolution (kernel 2 x 3 over the
final frequency rows) move between phases unchanged; what changes is which table entries a
window reads and the attention masks of shifted windows, which are rebuilt for each grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from c2f.compression import Compression, PhaseInput
from c2f.models.augment import spec_augmentation
from c2f.models.mixup import BatchMix
from c2f.models.registry import ModelFamily, load_by_names, register_model
from c2f.spec import ConfigError, ModelSpec

WINDOW = 8  # config.py htsat_window_size
CHUNK = 256  # config.py htsat_spec_size: frames per folded chunk
DEPTHS = (2, 2, 6, 2)  # config.py htsat_depth
HEADS = (4, 8, 16, 32)  # config.py htsat_num_head
PATCH = 4  # config.py htsat_patch_size, htsat_stride (4, 4)


def relative_index(window: tuple[int, int], table: int) -> torch.Tensor:
    """[N, N] indices into a (2*table-1)^2 bias table for a window of `window` tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]),
                                        indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (table - 1)
    return offsets[..., 0] * (2 * table - 1) + offsets[..., 1]


def shifted_window_mask(grid: tuple[int, int], window: tuple[int, int],
                        shift: tuple[int, int]) -> torch.Tensor | None:
    """Swin's attention mask for shifted windows: -100 between tokens of different regions."""
    if shift == (0, 0):
        return None
    regions = torch.zeros(grid)
    label = 0
    spans = [((0, -window[a]), (-window[a], -shift[a]), (-shift[a], None)) if shift[a]
             else ((0, None),) for a in (0, 1)]
    for h in spans[0]:
        for w in spans[1]:
            regions[slice(*h), slice(*w)] = label
            label += 1
    windows = partition(regions[None, :, :, None], window).flatten(1)
    mask = windows[:, None, :] - windows[:, :, None]
    return mask.masked_fill(mask != 0, -100.0)


def partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """[B, H, W, C] -> [B * windows, wh, ww, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // window[0], window[0], w // window[1], window[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window[0], window[1], c)


def unpartition(windows: torch.Tensor, window: tuple[int, int], h: int, w: int) -> torch.Tensor:
    """[B * windows, wh, ww, C] -> [B, H, W, C]."""
    b = windows.shape[0] // ((h // window[0]) * (w // window[1]))
    x = windows.view(b, h // window[0], w // window[1], window[0], window[1], -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


class WindowAttention(nn.Module):
    """htsat.py WindowAttention: multi-head attention in a window with relative position
    biases from a (2*8-1)^2 table; a smaller window reads its sub-block."""

    def __init__(self, dim: int, heads: int, window: tuple[int, int], table: int = WINDOW):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * table - 1) ** 2, heads))
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("index", relative_index(window, table), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.index.reshape(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(b // windows, windows, self.heads, n, n) + mask[None, :, None]
            attn = attn.view(b, self.heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """htsat.py SwinTransformerBlock on a (possibly non-square) grid."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int], shifted: bool,
                 mlp_ratio: float, drop_path: float):
        super().__init__()
        self.grid = grid
        self.window = (min(WINDOW, grid[0]), min(WINDOW, grid[1]))
        self.shift = tuple(WINDOW // 2 if shifted and g > WINDOW else 0 for g in grid)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.window)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("mask", shifted_window_mask(grid, self.window, self.shift),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.grid, x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift != (0, 0):
            y = torch.roll(y, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        windows = partition(y, self.window).reshape(-1, self.window[0] * self.window[1], c)
        y = unpartition(self.attn(windows, self.mask).view(-1, *self.window, c), self.window,
                        h, w)
        if self.shift != (0, 0):
            y = torch.roll(y, shifts=self.shift, dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """htsat.py PatchMerging: 2 x 2 neighbours concatenated, normalized, projected to 2 dim."""

    def __init__(self, dim: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.grid, x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class Stage(nn.Module):
    """htsat.py BasicLayer: blocks alternating plain and shifted windows, then a merge."""

    def __init__(self, dim: int, depth: int, heads: int, grid: tuple[int, int],
                 mlp_ratio: float, drop_paths: list[float], merge: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, grid, shifted=i % 2 == 1, mlp_ratio=mlp_ratio,
                      drop_path=drop_paths[i]) for i in range(depth))
        self.downsample = PatchMerging(dim, grid) if merge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    """htsat.py PatchEmbed: 4 x 4 patches (stride 4), LayerNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=PATCH, stride=PATCH)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """HTS-AT on a log-mel [batch, frames, mel] -> logits (clip-wise TSCAM output)."""

    def __init__(self, *, num_mel_bins: int, frames: int, num_classes: int, dim: int = 96,
                 depths: tuple[int, ...] = DEPTHS, heads: tuple[int, ...] = HEADS,
                 chunk: int = CHUNK, mlp_ratio: float = 4.0, drop_path: float = 0.1,
                 time_drop: int = 64, freq_drop: int = 8):  # htsat.py SpecAugmentation's
        super().__init__()
        self.mel, self.chunk, self.time_drop, self.freq_drop = num_mel_bins, chunk, time_drop, \
            freq_drop
        self.chunks = frames // chunk
        self.bn0 = nn.BatchNorm2d(num_mel_bins)
        self.patch_embed = PatchEmbed(dim)
        grid = (num_mel_bins * self.chunks // PATCH, chunk // PATCH)
        rates = torch.linspace(0, drop_path, sum(depths), device="cpu").tolist()  # htsat.py dpr
        self.layers = nn.ModuleList()
        for i, (depth, head) in enumerate(zip(depths, heads)):
            last = i == len(depths) - 1
            self.layers.append(Stage(dim * 2 ** i, depth, head, grid, mlp_ratio,
                                     rates[sum(depths[:i]):sum(depths[:i + 1])], not last))
            if not last:
                grid = (grid[0] // 2, grid[1] // 2)
        features = dim * 2 ** (len(depths) - 1)
        self.final_grid = grid
        self.norm = nn.LayerNorm(features)
        self.rows = num_mel_bins // PATCH // 2 ** (len(depths) - 1)  # htsat.py SF, per chunk
        self.tscam_conv = nn.Conv2d(features, num_classes, kernel_size=(self.rows, 3),
                                    padding=(0, 1))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:  # htsat.py _init_weights
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, chunks * chunk, mel] -> [B, 1, chunks * mel, chunk]: chunk k of the time
        axis becomes rows k * mel .. (k + 1) * mel (htsat.py reshape_wav2img)."""
        b = x.shape[0]
        x = x.transpose(2, 3).reshape(b, 1, self.mel, self.chunks, self.chunk)
        return x.permute(0, 1, 3, 2, 4).reshape(b, 1, self.chunks * self.mel, self.chunk)

    def forward(self, spec: torch.Tensor, mix: BatchMix | None = None) -> torch.Tensor:
        x = spec[:, :self.chunks * self.chunk].unsqueeze(1)  # [B, 1, time, mel]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        if self.training:  # htsat.py spec_augmenter (torchlibrosa SpecAugmentation)
            x = spec_augmentation(x, self.time_drop, self.freq_drop)
        if self.training and mix is not None:  # htsat.py: do_mixup after SpecAugment
            x = mix.inputs(x)
        x = self.patch_embed(self.fold(x))
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        b, _, c = x.shape
        f, t = self.final_grid
        x = x.transpose(1, 2).reshape(b, c, f, t)
        # unfold the chunks back into time: [B, C, rows, chunks * t] (htsat.py c_freq_bin)
        x = x.reshape(b, c, self.chunks, self.rows, t).permute(0, 1, 3, 2, 4)
        x = self.tscam_conv(x.reshape(b, c, self.rows, self.chunks * t)).flatten(2)
        return x.mean(dim=2)  # htsat.py avgpool over time: clip-wise logits


@register_model("htsat")
class HTSATFamily(ModelFamily):
    """HTS-AT: time compression of its input (Fshift, pooling); C divides the chunk count."""

    batch_mixup = True  # HTS-AT mixes log-mels with the flipped batch (htsat.py forward)
    reads = frozenset({"embed_dim", "depths", "heads", "chunk", "mlp_ratio", "drop_path"})
    moves = "every weight unchanged (windows read the sub-block of their bias tables)"

    def check(self, spec: ModelSpec, compression: str, phase: PhaseInput, num_mel_bins: int,
              c: int) -> None:
        if spec.features is None:
            raise ConfigError("`model.features`: HTS-AT needs its log-mel settings "
                              "(conf/model/htsat.yaml)")
        chunk, depths = spec.chunk or CHUNK, spec.depths or DEPTHS
        merges = 2 ** (len(depths) - 1)
        if phase.model_frames % chunk or num_mel_bins % (PATCH * merges) \
                or chunk % (PATCH * merges):
            raise ConfigError(
                f"HTS-AT folds its input in chunks of model.chunk={chunk} frames: the model "
                f"sees {phase.model_frames} frames at C = {c} ({compression}), which must be a "
                f"multiple of {chunk}; and {num_mel_bins} mel bins and the chunk must be "
                f"multiples of {PATCH * merges}. Pick dataset.target_length = {chunk} x "
                f"chunks x C")

    def build(self, spec: ModelSpec, *, num_classes: int, num_mel_bins: int, frames: int,
              patch: tuple[int, int], c: int = 1) -> HTSAT:
        return HTSAT(num_mel_bins=num_mel_bins, frames=frames, num_classes=num_classes,
                     dim=spec.embed_dim, depths=tuple(spec.depths or DEPTHS),
                     heads=tuple(spec.heads or HEADS), chunk=spec.chunk or CHUNK,
                     mlp_ratio=spec.mlp_ratio, drop_path=spec.drop_path,
                     time_drop=64 // c)  # / C: its duration kept (c2f's choice; paper silent)

    def load_pretrained(self, model: HTSAT, spec: ModelSpec, compression: Compression
                        ) -> list[str]:
        """An official checkpoint by its names (`sed_model.` prefix of PyTorch Lightning
        dropped; the log-mel extractors, `relative_position_index`, `attn_mask` and the unused
        `head` are not needed); a TSCAM head of another class count stays at init."""
        return load_by_names(model, spec.pretrained, ("state_dict",),
                             ("module.", "sed_model."), "htsat.py's names: "
                             "patch_embed.proj.weight, layers.0.blocks.0.attn.qkv.weight, ...",
                             heads=("tscam_conv.", "head."),
                             preset="model=htsat for the official HTS-AT", inputs=("bn0.",))
