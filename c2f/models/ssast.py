"""SSAST's self-supervised pretraining (Gong et al., AAAI 2022): masked spectrogram patch
modeling on the patch-based AST, the paper's Table 6 SSAST rows.

Follows YuanGongND/ssast `src/models/ast_models.py` (class ASTModel, "ast_models.py" below) and
`src/traintest_mask.py` ("traintest_mask.py"):
- the encoder is an AST with cls and distillation tokens (DeiT), 16 x 16 non-overlapping
  patches; masked patches' embeddings are replaced by one learned `mask_embed`;
- `cpredlayer` (Linear, ReLU, Linear to 256) predicts, for every masked patch, a vector whose
  inner products with the masked patches' raw 256 values are classified (InfoNCE over the
  masked patches of the clip: ast_models.py `mpc`); `gpredlayer` (the same shape, to
  f x t = 256 values) reconstructs them (mean squared error: `mpg`);
- the joint objective runs both on two independently masked copies of the batch and adds
  them as nce + 10 * mse (traintest_mask.py, task pretrain_joint);
- masking: `cluster_mask` (ast_models.py `gen_maskid_patch`, used when patches are not whole
  frames) or `frame_mask` (`gen_maskid_frame`); 400 masked patches of AudioSet's 512
  (run_mask_patch.sh mask_patch=400), scaled with the patch count at C (`masked_count`).

Unlike ast_models.py the masks are drawn outside the model from a seeded torch.Generator (the
official code draws from Python's `random`), so a resumed run repeats them; and the per-example
loops are batched gathers with the same arithmetic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from c2f.models.ast import AST

MASKED_PATCHES = 400  # run_mask_patch.sh mask_patch=400 (of 8 x 64 = 512 patches)
BASE_PATCHES = 512  # 128 mel x 1024 frames in 16 x 16 patches
CLUSTER = 3  # run.py --cluster_factor 3: clusters of 3x3 .. 5x5 patches
GENERATIVE_WEIGHT = 10.0  # traintest_mask.py: loss = loss1 + 10 * loss2
CODE = 256  # ast_models.py cpredlayer output size


def masked_count(patches: int, base_patches: int = BASE_PATCHES,
                 base_count: int = MASKED_PATCHES) -> int:
    """SSAST's masked-patch count for a grid of `patches` (the same fraction as 400 of 512)."""
    return max(1, round(base_count * patches / base_patches))


def cluster_mask(generator: torch.Generator, grid: tuple[int, int], count: int,
                 cluster: int = CLUSTER) -> torch.Tensor:
    """ast_models.py `gen_maskid_patch`: square clusters of k x k patches (k drawn once per
    clip from 3 .. cluster + 2) at random starts, until more than `count` distinct patches are
    masked; then the `count` lowest of them. As in the original, a cluster that runs over the
    right edge continues on the next row, and patch 0 is never masked."""
    _, t_dim = grid
    length = grid[0] * grid[1]
    side = int(torch.randint(0, cluster, (), generator=generator)) + 3
    chosen: dict[int, None] = {}
    while len(chosen) <= count:
        start = int(torch.randint(0, length, (), generator=generator))
        for i in range(side):
            for j in range(side):
                candidate = start + t_dim * i + j
                if 0 < candidate < length:
                    chosen[candidate] = None
    # ast_models.py: list(set(mask_id))[:mask_size]; CPython iterates a set of small
    # non-negative ints in ascending order, so that keeps the lowest indices
    return torch.tensor(sorted(chosen)[:count])


def frame_mask(generator: torch.Generator, length: int, count: int) -> torch.Tensor:
    """ast_models.py `gen_maskid_frame`: `count` distinct patches uniformly at random."""
    return torch.randperm(length, generator=generator)[:count]


class SSASTPretrainer(nn.Module):
    """The encoder (an `AST`) with SSAST's mask embedding and its two prediction heads."""

    def __init__(self, encoder: AST, masked: int | None = None):
        super().__init__()
        dim = encoder.vit.embed_dim
        encoder.head = nn.Identity()  # pretraining has no classifier (ast_models.py: no mlp_head)
        self.encoder = encoder
        self.patch = encoder.patch
        self.mask_embed = nn.Parameter(nn.init.xavier_normal_(torch.zeros(1, 1, dim)))
        self.cpredlayer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, CODE))
        self.gpredlayer = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(),
                                        nn.Linear(dim, self.patch[0] * self.patch[1]))
        self.masked = masked or masked_count(self.grid[0] * self.grid[1])

    @property
    def grid(self) -> tuple[int, int]:
        return self.encoder.grid

    def patches(self, image: torch.Tensor) -> torch.Tensor:
        """Raw patch values [B, N, f * t] in the encoder's token order (ast_models.py unfold)."""
        return F.unfold(image, kernel_size=self.patch, stride=self.patch).transpose(1, 2)

    def encode(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder outputs [B, M, D] at the masked positions `mask` [B, M] (mask_embed in)."""
        vit = self.encoder.vit
        x = vit.patch_embed(image)
        hidden = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        hidden.scatter_(1, mask, True)
        x = torch.where(hidden[..., None], self.mask_embed.to(x.dtype), x)
        x = vit._pos_embed(x)
        x = vit.norm_pre(x)
        x = vit.norm(vit.blocks(x))
        prefix = vit.num_prefix_tokens
        return x[:, prefix:].gather(1, mask[..., None].expand(-1, -1, x.shape[-1]))

    def discriminative(self, image: torch.Tensor, mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(accuracy, InfoNCE) of ast_models.py `mpc`."""
        target = self.patches(image).gather(1, mask[..., None].expand(-1, -1, CODE))
        pred = self.cpredlayer(self.encode(image, mask))
        total = target @ pred.transpose(1, 2)  # [B, M, M]: encoded sample x prediction
        count = mask.shape[1]
        right = torch.arange(count, device=image.device)
        correct = (total.softmax(dim=-1).argmax(dim=1) == right).float().mean()
        nce = -total.log_softmax(dim=-1).diagonal(dim1=1, dim2=2).mean()
        return correct, nce

    def generative(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error of ast_models.py `mpg`."""
        values = self.patches(image)
        target = values.gather(1, mask[..., None].expand(-1, -1, values.shape[-1]))
        return F.mse_loss(self.gpredlayer(self.encode(image, mask)), target)

    def objective(self, spec: torch.Tensor, mask_c: torch.Tensor, mask_g: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
        """The joint objective on a batch [B, frames, mel] with two masks [B, M]."""
        image = spec.transpose(1, 2).unsqueeze(1)  # frequency is the height, as AST
        acc, nce = self.discriminative(image, mask_c)
        mse = self.generative(image, mask_g)
        out = {"loss": nce + GENERATIVE_WEIGHT * mse, "acc": acc, "nce": nce, "mse": mse}
        self.last = {k: v.detach() for k, v in out.items()}  # for logging after forward()
        return out

    def forward(self, spec: torch.Tensor, mask_c: torch.Tensor | None = None,
                mask_g: torch.Tensor | None = None) -> torch.Tensor:
        """The joint loss. Without masks, the first `masked` patches are masked: what the
        plan's FLOPs count needs (the cost does not depend on which patches)."""
        if mask_c is None:
            first = torch.arange(self.masked, device=spec.device).expand(spec.shape[0], -1)
            mask_c = mask_g = first
        return self.objective(spec, mask_c, mask_g)["loss"]


def pretrainer(spec, pretrain, *, num_mel_bins: int, frames: int,
               patch: tuple[int, int]) -> SSASTPretrainer:
    """A phase's pretrainer: the AST of `spec` (model.*) for this input, SSAST's heads, and
    the masked-patch count of `pretrain` (pretrain.masked per 512 patches) for its grid."""
    encoder = AST(num_mel_bins=num_mel_bins, frames=frames, patch=patch, num_classes=1,
                  embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads,
                  mlp_ratio=spec.mlp_ratio, dist_token=spec.dist_token,
                  drop_path=spec.drop_path)
    grid = (num_mel_bins // patch[0], frames // patch[1])
    return SSASTPretrainer(encoder, masked_count(grid[0] * grid[1],
                                                 base_count=pretrain.masked))
