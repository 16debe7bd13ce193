"""Residual U-Net (RUNet), after Wodzinski & Müller's Light My Cells entry.

An encoder of residual blocks with stride-2 convolutions, a decoder of transposed
convolutions with skip concatenations and residual blocks, and a 1×1 head. Batch norm (when
on) becomes a fixed per-channel affine map in eval mode, so predictions do not depend on
how an image is tiled.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class ResBlock(nn.Module):
    """conv-norm-act-conv-norm plus a (1×1 when the width changes) shortcut, then act."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"),
            _norm(norm, c_out),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm == "none"),
            _norm(norm, c_out),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, H, W) → (B, c_out, H, W)."""
        return self.act(self.body(x) + self.skip(x))


def _stage(c_in: int, c_out: int, blocks: int, norm: str) -> nn.Sequential:
    layers = [ResBlock(c_in, c_out, norm)]
    layers += [ResBlock(c_out, c_out, norm) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class RUNet(nn.Module):
    """Residual U-Net mapping ``(B, 1, H, W)`` to ``(B, out_channels, H, W)``.

    Parameters
    ----------
    out_channels:
        One channel per predicted organelle.
    depth:
        Number of 2× down-samplings; ``H`` and ``W`` must be multiples of ``2**depth``.
    width:
        Channels at full resolution, doubled at each level.
    blocks:
        Residual blocks per level.
    norm:
        ``"batch"`` or ``"none"``.
    """

    def __init__(
        self, out_channels: int = 1, depth: int = 3, width: int = 16, blocks: int = 1,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.depth = depth
        widths = [width * 2**level for level in range(depth + 1)]
        self.stem = _stage(1, widths[0], blocks, norm)
        self.down = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i], 3, stride=2, padding=1) for i in range(depth)
        )
        self.enc = nn.ModuleList(
            _stage(widths[i], widths[i + 1], blocks, norm) for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)
        )
        self.dec = nn.ModuleList(
            _stage(2 * widths[i], widths[i], blocks, norm) for i in range(depth)
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) → (B, C, H, W)."""
        x = self.stem(x)  # (B, w, H, W)
        skips = []
        for down, enc in zip(self.down, self.enc, strict=True):
            skips.append(x)
            x = enc(down(x))  # (B, 2w, H/2, W/2) per level
        for level in reversed(range(self.depth)):
            x = self.up[level](x)  # back to the skip's size and width
            x = self.dec[level](torch.cat([x, skips[level]], dim=1))
        return self.head(x)
