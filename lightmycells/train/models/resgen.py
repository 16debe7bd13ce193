"""ResNet generator of pix2pix (seed 003, MedICL-VU), with one decoder per organelle.

A reflect-padded 7×7 stem, ``downs`` stride-2 convolutions (width doubling), ``blocks``
residual blocks at the lowest resolution, then either one shared decoder or one decoder per
output organelle (the seed's ``ResMultiDecoder``): ``downs`` transposed convolutions back to
full resolution and a reflect-padded 7×7 head.

Deliberate departures from the seed's code (``SEED_SYSTEMS.md`` §3 B.3):

- batch norm, never instance norm: in eval mode batch norm is a fixed per-channel affine map,
  so a tile's prediction does not depend on the other pixels of its tile (instance norm takes
  statistics per tile, which breaks tile independence and the Hann blending of the tiler);
- a linear head, no tanh: the targets are percentile-normalised and exceed 1 above p99.8;
- optional FiLM conditioning on a one-hot modality code (the seed's "dynamic" model): the
  stem and every down-sampling norm are followed by ``x · (1 + γ(code)) + β(code)``, with γ, β
  linear in the code and initialised to zero (so the conditioned model starts as the
  unconditioned one). ``code`` is ``(B, K)`` or ``(1, K)`` (broadcast over the batch, how the
  per-modality exports fold a constant code in).
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class FiLM(nn.Module):
    """Feature-wise affine map from a condition code: ``x · (1 + γ(code)) + β(code)``."""

    def __init__(self, codes: int, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Linear(codes, channels)
        self.beta = nn.Linear(codes, channels)
        for layer in (self.gamma, self.beta):  # identity at initialisation
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) and (B or 1, K) → (B, C, H, W)."""
        return x * (1 + self.gamma(code)[:, :, None, None]) + self.beta(code)[:, :, None, None]


class ResnetBlock(nn.Module):
    """pad-conv-norm-ReLU-[dropout]-pad-conv-norm plus the identity (pix2pix's block)."""

    def __init__(self, channels: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
            _norm(norm, channels), nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
                   _norm(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W)."""
        return x + self.body(x)


def _decoder(width: int, downs: int, out_channels: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = width * 2**downs
    for _ in range(downs):
        layers += [
            nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1,
                               output_padding=1, bias=norm == "none"),
            _norm(norm, channels // 2), nn.ReLU(inplace=True),
        ]
        channels //= 2
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7)]
    return nn.Sequential(*layers)


class ResGenerator(nn.Module):
    """pix2pix ResNet generator mapping ``(B, 1, H, W)`` to ``(B, out_channels, H, W)``.

    Parameters
    ----------
    out_channels:
        Output organelles.
    width:
        Stem channels (the seed's ``ngf``, 64 there); doubled at each down-sampling.
    downs:
        Stride-2 down-samplings (2 in the seed); inputs must be multiples of ``2**downs``.
    blocks:
        Residual blocks at the lowest resolution (9 in the paper, 12 in the seed's code).
    per_organelle:
        One decoder per output channel (the seed's layout) instead of one shared decoder.
    norm:
        ``batch`` or ``none``.
    dropout:
        Dropout in the residual blocks (the seed's 0.5; export runs in eval mode, so off).
    codes:
        Size of the one-hot condition code for FiLM, 0 for an unconditioned model.
    """

    def __init__(self, out_channels: int, *, width: int = 16, downs: int = 2, blocks: int = 4,
                 per_organelle: bool = True, norm: str = "batch", dropout: float = 0.0,
                 codes: int = 0) -> None:
        super().__init__()
        self.codes = codes
        self.stem = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(1, width, 7, bias=norm == "none"),
            _norm(norm, width),
        )
        self.downs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(width * 2**i, width * 2 ** (i + 1), 3, stride=2, padding=1,
                          bias=norm == "none"),
                _norm(norm, width * 2 ** (i + 1)),
            )
            for i in range(downs)
        )
        widths = [width * 2**i for i in range(downs + 1)]
        self.films = nn.ModuleList(FiLM(codes, c) for c in widths) if codes else None
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(
            *(ResnetBlock(widths[-1], norm, dropout) for _ in range(blocks))
        )
        if per_organelle:
            self.decoders = nn.ModuleList(
                _decoder(width, downs, 1, norm) for _ in range(out_channels)
            )
        else:
            self.decoders = nn.ModuleList([_decoder(width, downs, out_channels, norm)])

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, H, W) [and the (B or 1, codes) condition] → (B, out_channels, H, W)."""
        if (code is None) != (self.films is None):
            raise ValueError(
                f"this generator takes {'a' if self.films is not None else 'no'} condition "
                f"code of {self.codes} numbers (got {'none' if code is None else 'one'})"
            )
        stages = [self.stem, *self.downs]
        for i, stage in enumerate(stages):
            x = stage(x)
            if self.films is not None:
                x = self.films[i](x, code)
            x = self.act(x)
        x = self.blocks(x)
        return torch.cat([decoder(x) for decoder in self.decoders], dim=1)
