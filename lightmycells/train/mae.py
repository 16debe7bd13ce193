"""Masked-autoencoder pretraining of a UNETR's encoder (seed 002; He et al. 2022).

The run kind ``mae`` (a config with a ``pretrain`` section) trains :class:`MaskedAutoencoder`
on unlabelled planes: every plane of every field of view under ``data.roots`` and
``pretrain.extra_roots``, whether it has a target or not. A batch of patches is cut into
tokens; the masked ones (``pretrain.mask``: the fixed 50 % checkerboard, or a random
``ratio``) are dropped, the encoder — the very :class:`~lightmycells.train.models.unetr.ViTEncoder`
a UNETR uses, with the same tensor names — sees the visible ones, and a small transformer
decoder (thrown away afterwards) predicts the pixels of every token. The loss is the mean
squared error over the **masked tokens only**.

Validation reconstructs the centre patch of each held-out plane with a fixed mask and reports
the masked-token MSE, the MSE of "predict the mean of the visible pixels", and
``val_score = 1 - mse / mean_mse`` (> 0: better than the mean; the best checkpoint keeps the
highest). A fine-tuning run then starts with ``init_from: <this run>/best.pt``, which loads the
``encoder.*`` tensors into the UNETR and lists the MAE decoder's as skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from lightmycells.train import data
from lightmycells.train.config import MaskKind, PretrainConfig, TrainConfig, UnetrConfig, ZStack
from lightmycells.train.models.unetr import (
    LN_EPS,
    Block,
    LayerNorm32,
    ViTEncoder,
    sincos_position_embedding,
)
from lightmycells.vocab import Organelle

#: Seed of the validation mask (``random`` masking), so validations compare.
VAL_MASK_SEED = 0


def grid_mask(rows: int, cols: int) -> torch.Tensor:
    """The checkerboard of a ``rows × cols`` token grid, row-major ``(rows·cols,)`` bool.

    True (masked) where ``row + col`` is even — BiaPy's ``mask[::2, ::2] = mask[1::2, 1::2] = 1``.
    """
    r = torch.arange(rows)[:, None]
    c = torch.arange(cols)[None, :]
    return ((r + c) % 2 == 0).reshape(-1)


def hidden_tokens(tokens: int, ratio: float) -> int:
    """How many of ``tokens`` a random mask hides: ``round(ratio · tokens)``, within [1, N-1]."""
    return min(tokens - 1, max(1, round(ratio * tokens)))


def random_mask(batch: int, tokens: int, ratio: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``(batch, tokens)`` bool, exactly :func:`hidden_tokens` True (masked) per row."""
    order = torch.rand(batch, tokens, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch, tokens, dtype=torch.bool)
    mask.scatter_(1, order[:, :hidden_tokens(tokens, ratio)], True)
    return mask


def sample_mask(pre: PretrainConfig, rows: int, cols: int,
                rng: np.random.Generator) -> torch.Tensor:
    """One sample's ``(rows·cols,)`` mask under ``pretrain.mask``, drawn from ``rng``."""
    if pre.mask == MaskKind.GRID:
        return grid_mask(rows, cols)
    mask = np.zeros(rows * cols, bool)
    mask[rng.permutation(rows * cols)[: hidden_tokens(rows * cols, pre.ratio)]] = True
    return torch.from_numpy(mask)


def patchify(x: torch.Tensor, token: int) -> torch.Tensor:
    """(B, 1, H, W) → (B, N, token²), tokens row-major (the order of the encoder's grid)."""
    b, _, h, w = x.shape
    rows, cols = h // token, w // token
    x = x.reshape(b, rows, token, cols, token).permute(0, 1, 3, 2, 4)
    return x.reshape(b, rows * cols, token * token)


def unpatchify(tokens: torch.Tensor, rows: int, cols: int, token: int) -> torch.Tensor:
    """(B, N, token²) → (B, 1, rows·token, cols·token); inverse of :func:`patchify`."""
    b = tokens.shape[0]
    x = tokens.reshape(b, rows, cols, token, token).permute(0, 1, 3, 2, 4)
    return x.reshape(b, 1, rows * token, cols * token)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked tokens of each token's pixel MSE; unmasked tokens count for nothing.

    ``pred``/``target`` ``(B, N, P)``, ``mask`` ``(B, N)`` (1 = masked).
    """
    per_token = ((pred - target) ** 2).mean(dim=-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


class MaskedAutoencoder(nn.Module):
    """A UNETR's ViT encoder with an MAE decoder; ``forward(x)`` → (pred, target, mask).

    ``pred`` and ``target`` are ``(B, N, token²)``, ``mask`` ``(B, N)`` bool (True = masked).
    """

    def __init__(self, vit: UnetrConfig, pre: PretrainConfig) -> None:
        super().__init__()
        self.token, self.pre = vit.token, pre
        self.encoder = ViTEncoder(vit.token, vit.embed, vit.layers, vit.heads, vit.mlp_ratio)
        self.enc_norm = LayerNorm32(vit.embed, eps=LN_EPS)
        self.dec_embed = nn.Linear(vit.embed, pre.dec_embed)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pre.dec_embed))
        nn.init.normal_(self.mask_token, std=0.02)
        self.dec_blocks = nn.ModuleList(Block(pre.dec_embed, pre.dec_heads, vit.mlp_ratio)
                                        for _ in range(pre.dec_layers))
        self.dec_norm = LayerNorm32(pre.dec_embed, eps=LN_EPS)
        self.dec_pred = nn.Linear(pre.dec_embed, vit.token**2)

    def make_mask(self, batch: int, rows: int, cols: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """The ``(batch, rows·cols)`` mask of ``pretrain.mask``."""
        if self.pre.mask == MaskKind.GRID:
            return grid_mask(rows, cols)[None].expand(batch, -1)
        return random_mask(batch, rows * cols, self.pre.ratio, generator)

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """The pixels each token must reconstruct (per-token normalised with ``norm_pix_loss``)."""
        target = patchify(x, self.token)
        if self.pre.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible tokens of ``x``, predict every token; see the class docstring."""
        tokens, rows, cols = self.encoder.tokens(x)
        b, n, d = tokens.shape
        if mask is None:
            mask = self.make_mask(b, int(rows), int(cols))
        mask = mask.to(x.device)
        # every row of a mask hides the same number of tokens, so the visible ones stack
        keep = (~mask).nonzero()[:, 1].reshape(b, -1)  # (B, V) in token order
        visible = tokens.gather(1, keep[..., None].expand(-1, -1, d))
        for block in self.encoder.blocks:
            visible = block(visible)
        visible = self.dec_embed(self.enc_norm(visible))
        full = self.mask_token.to(visible.dtype).expand(b, n, -1).clone()
        full = full.scatter(1, keep[..., None].expand(-1, -1, visible.shape[-1]), visible)
        full = full + sincos_position_embedding(rows, cols, full.shape[-1],
                                                device=x.device).to(full.dtype)
        for block in self.dec_blocks:
            full = block(full)
        return self.dec_pred(self.dec_norm(full)), self.target(x), mask


class MaskedTokenLoss(nn.Module):
    """The trainer's loss for an MAE: ``masked_mse`` of the model's (pred, target, mask)."""

    weights = {"masked_mse": 1.0}

    def forward(self, out: tuple[torch.Tensor, torch.Tensor, torch.Tensor], y: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of ``out``; ``y`` is empty (the target is the input), ``valid`` the mask."""
        pred, target, mask = out
        loss = masked_mse(pred.float(), target.float(), mask)
        return loss, {"masked_mse": float(loss.detach())}


class UnlabelledPatches(Dataset):
    """Augmented patches of any plane of any field of view; item ``i`` depends on ``(seed, i)``.

    Returns ``(x (1, P, P), empty, mask (N,) bool)``: the trainer's batch shape, no target,
    the sample's token mask in the place of the target mask. A field of view is drawn
    uniformly, then one of its planes, then a patch, then (``random``) the mask — all from
    the item's own generator, so a resumed run draws the masks of an uninterrupted one.
    """

    def __init__(self, fovs: Sequence[data.FieldOfView], cfg: TrainConfig, *, seed: int,
                 length: int, store: data.ImageStore) -> None:
        if not fovs:
            raise data.DataError("pretraining: no input plane to train on")
        if cfg.pretrain is None:
            raise ValueError("UnlabelledPatches needs a pretrain section")
        self.fovs, self.cfg, self.seed, self.length, self.store = list(fovs), cfg.data, seed, \
            length, store
        self.pre = cfg.pretrain
        self.grid = cfg.data.patch // (cfg.model.unetr or UnetrConfig()).token

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        fov = self.fovs[int(rng.integers(len(self.fovs)))]
        plane = self.store.get(data.input_source(fov, ZStack.PLANE, rng), fov.pixel_size_um)
        size, (height, width) = self.cfg.patch, plane.pixels.shape
        top = int(rng.integers(max(height - size, 0) + 1))
        left = int(rng.integers(max(width - size, 0) + 1))
        aug = self.cfg.augment
        x = data._gamma_normalized(plane, data._crop(plane.pixels, top, left, size),
                                   data._draw_gamma(rng, aug))
        x = x * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + rng.uniform(
            -aug.brightness, aug.brightness)
        x = x[None].astype(np.float32)
        if aug.dihedral:
            x = data._dihedral(x, rng)
        mask = sample_mask(self.pre, self.grid, self.grid, rng)
        return torch.from_numpy(x.copy()), torch.zeros(0), mask


def centre_patch(plane: data.Plane, size: int) -> np.ndarray:
    """The normalised ``size``² centre crop of a plane (reflect-padded when smaller)."""
    height, width = plane.pixels.shape
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return plane.normalized(data._crop(plane.pixels, top, left, size))


class MaeValidator:
    """Masked-token MSE on the centre patch of each held-out plane, against the mean."""

    def __init__(self, cfg: TrainConfig, fovs: Sequence[data.FieldOfView],
                 store: data.ImageStore) -> None:
        self.cfg, self.fovs, self.store = cfg, list(fovs), store

    def columns(self) -> list[str]:
        """CSV columns this validator fills."""
        return ["val_score", "val_masked_mse", "val_mean_mse"]

    @torch.no_grad()
    def __call__(self, model: MaskedAutoencoder, device: torch.device) -> dict[str, float]:
        """Masked-token MSE, the MSE of the visible pixels' mean, and ``val_score``."""
        was_training = model.training
        model.eval()
        size = self.cfg.data.patch
        x = torch.from_numpy(np.stack([
            centre_patch(self.store.get(f.validation_plane(), f.pixel_size_um), size)
            for f in self.fovs])[:, None]).to(device)
        rows = cols = size // model.token
        mask = model.make_mask(len(self.fovs), rows, cols,
                               torch.Generator().manual_seed(VAL_MASK_SEED))
        pred, target, mask = model(x, mask)
        visible = (~mask).to(target.dtype)[..., None]
        mean = (target * visible).sum(dim=(1, 2)) / (visible.sum(dim=(1, 2)) * target.shape[-1])
        mse = float(masked_mse(pred.float(), target, mask))
        mean_mse = float(masked_mse(mean[:, None, None].expand_as(target), target, mask))
        model.train(was_training)
        return {"val_score": 1.0 - mse / max(mean_mse, 1e-12), "val_masked_mse": mse,
                "val_mean_mse": mean_mse}


class MaskedAutoencoding:
    """The ``mae`` run kind: unlabelled planes, :class:`MaskedAutoencoder`, masked-token MSE."""

    def __init__(self, cfg: TrainConfig, pairs: object = None) -> None:
        # pairs: the run-kind signature; pretraining indexes folders of planes, not pairs
        if cfg.pretrain is None:
            raise ValueError("the mae run kind needs a pretrain section")
        self.cfg, self.pre = cfg, cfg.pretrain

    def fovs(self) -> tuple[list[data.FieldOfView], list[data.FieldOfView]]:
        """(training, validation) fields of view of every root, with or without targets."""
        cfg = self.cfg
        if cfg.data.store is not None:
            raise data.DataError(f"pretraining reads Light My Cells folders (data.roots, "
                                 f"pretrain.extra_roots), not a packed store (data.store "
                                 f"{cfg.data.store}): not supported yet")
        roots = [*cfg.data.roots, *self.pre.extra_roots]
        if not roots:
            raise data.DataError("pretraining needs data.roots or pretrain.extra_roots "
                                 "(a pairs CSV alone is not indexed for planes)")
        fovs = data.index_fovs(roots, cfg.data.modalities)
        split = "fov" if cfg.data.split == "region" else cfg.data.split
        train, val = data.split_fovs(fovs, split, cfg.data.val_fraction, cfg.data.split_seed)
        return train, val[: cfg.data.max_val_images]

    def model(self, out_channels: int) -> nn.Module:
        """The MAE around a UNETR encoder of ``model.unetr``'s size."""
        return MaskedAutoencoder(self.cfg.model.unetr or UnetrConfig(), self.pre)

    def loss(self) -> nn.Module:
        """:class:`MaskedTokenLoss`."""
        return MaskedTokenLoss()

    @staticmethod
    def forward(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model on a batch, with the dataset's token masks."""
        return model(x, mask.bool())

    def dataset(self, fovs: Sequence[data.FieldOfView], organelles: Sequence[Organelle],
                store: data.ImageStore, length: int) -> Dataset:
        """:class:`UnlabelledPatches` of the training fields of view."""
        return UnlabelledPatches(fovs, self.cfg, seed=self.cfg.seed, length=length, store=store)

    def validator(self, fovs: Sequence[data.FieldOfView], organelles: Sequence[Organelle],
                  store: data.ImageStore) -> MaeValidator:
        """:class:`MaeValidator` of the held-out fields of view."""
        return MaeValidator(self.cfg, fovs, store)


def reconstruction_figure(checkpoint: str | Path, planes: Sequence[Path], out: str | Path,
                          *, size: int | None = None) -> Path:
    """A PNG of masked input, reconstruction (visible tokens pasted back) and original.

    One row per plane in ``planes`` (centre patch of ``size``, default the training patch).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig.model_validate(state["config"])
    kind = MaskedAutoencoding(cfg)
    model = kind.model(1)
    model.load_state_dict(state["model"])
    model.eval()
    size = size or cfg.data.patch
    store = data.ImageStore(cfg.data.norm_low, cfg.data.norm_high, False)
    x = torch.from_numpy(np.stack([centre_patch(store.get(p), size) for p in planes])[:, None])
    rows = cols = size // model.token
    mask = model.make_mask(len(planes), rows, cols, torch.Generator().manual_seed(VAL_MASK_SEED))
    with torch.no_grad():
        pred, target, mask = model(x, mask)
    tokens = patchify(x, model.token)
    masked_in = unpatchify(torch.where(mask[..., None], torch.nan, tokens), rows, cols, model.token)
    recon = unpatchify(torch.where(mask[..., None], pred, tokens), rows, cols, model.token)
    fig, axes = plt.subplots(len(planes), 3, figsize=(7.5, 2.6 * len(planes)), squeeze=False)
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("tab:blue")  # the masked tokens (NaN) of the first column
    for i, plane in enumerate(planes):
        lo, hi = np.percentile(x[i, 0].numpy(), [1, 99])
        for ax, image, title in zip(axes[i], (masked_in, recon, x),
                                    ("masked input", "reconstruction", "original"), strict=True):
            ax.imshow(image[i, 0].numpy(), cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(f"{title}\n{plane.name}" if title == "original" else title, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"MAE step {state['step']} ({cfg.pretrain.mask} mask)", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
