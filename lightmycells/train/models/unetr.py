"""UNETR: a vision-transformer encoder with a convolutional decoder (seed 002, BiaPy).

The encoder cuts the image into ``token × token`` patches, embeds each with a strided
convolution, adds a **2D sine-cosine position embedding computed for the token grid of the
input** (so one network, and one ONNX graph, serves every size that is a multiple of the
token), and runs pre-norm transformer blocks. The decoder follows BiaPy's
``biapy/models/unetr.py``: for a token of ``2**n`` pixels, ``n - 1`` skip taps from evenly
spaced blocks (the last block's output feeds both the bottleneck and the deepest skip), each
lifted to its level by transposed convolutions, concatenated with the running decoder tensor
and merged by conv blocks (conv ``k × k`` → BatchNorm → ReLU), plus a first skip from the raw
input at full resolution and a 1×1 head.

LayerNorm and the attention softmax always compute in float32, so a float16 export keeps them
exact (the casts are no-ops, absent from a float32 graph).

There is no class token: the decoder never used it, and a token-grid-only encoder keeps the
position embedding a pure function of the grid.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

#: LayerNorm epsilon of BiaPy's templates (timm's ViT default).
LN_EPS = 1e-6


def sincos_position_embedding(rows: torch.Tensor | int, cols: torch.Tensor | int, dim: int,
                              *, device: torch.device | None = None) -> torch.Tensor:
    """The 2D sine-cosine position embedding of a ``rows × cols`` token grid, ``(rows·cols, dim)``.

    Token ``(r, c)`` (row-major) gets ``[sin(r·ω), cos(r·ω), sin(c·ω), cos(c·ω)]`` with
    ``ω_k = 10000^(-k / (dim/4))``, ``k = 0 … dim/4 - 1`` (He et al.'s MAE construction with
    the row in the first half). ``rows``/``cols`` may be traced sizes, so an ONNX export stays
    dynamic.
    """
    if dim % 4:
        raise ValueError(f"the embedding width must be a multiple of 4 (got {dim})")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    r = torch.arange(rows, dtype=torch.float32, device=device)[:, None] * omega  # (R, q)
    c = torch.arange(cols, dtype=torch.float32, device=device)[:, None] * omega  # (C, q)
    n_r, n_c = r.shape[0], c.shape[0]
    row_part = torch.cat([r.sin(), r.cos()], dim=1)[:, None, :].expand(n_r, n_c, 2 * quarter)
    col_part = torch.cat([c.sin(), c.cos()], dim=1)[None, :, :].expand(n_r, n_c, 2 * quarter)
    return torch.cat([row_part, col_part], dim=2).reshape(n_r * n_c, dim)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (float16 keeps parity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last axis in float32, return in ``x``'s dtype."""
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with a qkv bias; the softmax runs in float32."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding width {dim} is not divisible by {heads} heads")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) → (B, N, D)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, h, N, d/h)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.float().softmax(dim=-1).to(v.dtype)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.attn = LayerNorm32(dim, eps=LN_EPS), Attention(dim, heads)
        self.norm2 = LayerNorm32(dim, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) → (B, N, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Patch embedding + sin-cos position + transformer blocks; shared by UNETR and the MAE.

    The tensor names (``patch_embed.*``, ``blocks.N.*``) are the same in both, so a
    pretraining checkpoint initialises a UNETR's ``encoder.*`` by name.
    """

    def __init__(self, token: int, embed: int, layers: int, heads: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.token, self.embed = token, embed
        self.patch_embed = nn.Conv2d(1, embed, token, stride=token)
        self.blocks = nn.ModuleList(Block(embed, heads, mlp_ratio) for _ in range(layers))

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) → tokens ``(B, N, D)`` with position added, and the grid (rows, cols)."""
        grid = self.patch_embed(x)  # (B, D, H/t, W/t)
        rows, cols = grid.shape[-2], grid.shape[-1]
        pos = sincos_position_embedding(rows, cols, self.embed, device=x.device)
        return grid.flatten(2).transpose(1, 2) + pos.to(grid.dtype), rows, cols

    def forward(self, x: torch.Tensor, taps: tuple[int, ...] = ()) -> list[torch.Tensor]:
        """Run every block; the outputs of the blocks numbered in ``taps`` (1-based)."""
        tokens, _, _ = self.tokens(x)
        out = []
        for number, block in enumerate(self.blocks, start=1):
            tokens = block(tokens)
            if number in taps:
                out.append(tokens)
        return out


def conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Convolution ``k × k`` ("same") → BatchNorm → ReLU (BiaPy's ``ConvBlock``)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def double_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """Two conv blocks (BiaPy's ``DoubleConvBlock``)."""
    return nn.Sequential(conv_block(c_in, c_out, kernel), conv_block(c_out, c_out, kernel))


def up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """2× up-sampling by a 2×2 stride-2 transposed convolution."""
    return nn.ConvTranspose2d(c_in, c_out, 2, stride=2)


def skip_taps(layers: int, levels: int) -> tuple[int, ...]:
    """``levels`` evenly spaced block numbers (1-based) ending at the last block.

    BiaPy's 12 blocks and 4 levels give 3, 6, 9, 12; 4 blocks and 3 levels give 2, 3, 4.
    """
    if layers < levels:
        raise ValueError(f"a UNETR with {levels} skip levels needs at least {levels} "
                         f"transformer blocks (got {layers})")
    return tuple(math.ceil(k * layers / levels) for k in range(1, levels + 1))


class UNETR(nn.Module):
    """UNETR: ``(B, 1, H, W)`` → ``(B, out_channels, H, W)``, ``H, W`` multiples of ``token``.

    Parameters
    ----------
    out_channels:
        One channel per predicted organelle.
    token:
        Token edge in pixels, a power of two ≥ 4 (BiaPy: 32).
    embed, layers, heads, mlp_ratio:
        Transformer width, blocks, attention heads, MLP hidden width / ``embed``.
    dec_width:
        Decoder filters at full resolution, doubled per level (BiaPy: 32).
    dec_kernel:
        Kernel of every decoder convolution (BiaPy's best: 9).
    """

    def __init__(self, out_channels: int = 1, token: int = 16, embed: int = 64, layers: int = 4,
                 heads: int = 4, mlp_ratio: float = 4.0, dec_width: int = 16,
                 dec_kernel: int = 3) -> None:
        super().__init__()
        n = int(round(math.log2(token)))
        if 2**n != token or n < 2:
            raise ValueError(f"the token must be a power of two ≥ 4 (got {token})")
        self.token, self.levels = token, n - 1
        self.taps = skip_taps(layers, self.levels)
        self.encoder = ViTEncoder(token, embed, layers, heads, mlp_ratio)
        f, k = dec_width, dec_kernel
        self.bottleneck = up(embed, f * 2 ** (n - 1))
        # level l = n-1 … 1: blue path (n - l up-samplings of the skip), merge, up to level l-1
        self.blue = nn.ModuleList()
        self.merge = nn.ModuleList()
        self.green = nn.ModuleList()
        for level in range(n - 1, 0, -1):
            width = f * 2**level
            steps = [nn.Sequential(up(embed if i == 0 else width, width),
                                   conv_block(width, width, k)) for i in range(n - level)]
            self.blue.append(nn.Sequential(*steps))
            self.merge.append(double_conv(2 * width, width, k))
            self.green.append(up(width, width // 2))
        self.first = double_conv(1, f, k)
        self.last = double_conv(2 * f, f, k)
        self.head = nn.Conv2d(f, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) → (B, C, H, W)."""
        b, rows, cols = x.shape[0], x.shape[-2] // self.token, x.shape[-1] // self.token
        features = self.encoder(x, self.taps)  # one (B, N, D) per level, shallow first

        def grid(tokens: torch.Tensor) -> torch.Tensor:
            return tokens.transpose(1, 2).reshape(b, tokens.shape[-1], rows, cols)

        y = self.bottleneck(grid(features[-1]))  # 1/2^(n-1)
        for i, (blue, merge, green) in enumerate(zip(self.blue, self.merge, self.green,
                                                     strict=True)):
            skip = blue(grid(features[-1 - i]))  # deepest skip first
            y = green(merge(torch.cat([skip, y], dim=1)))
        return self.head(self.last(torch.cat([self.first(x), y], dim=1)))
