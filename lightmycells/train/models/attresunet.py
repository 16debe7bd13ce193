"""Attention residual U-Net, after the Bug Hunters' adipocyte entry (seed 004).

Pre-activation residual blocks (norm → LeakyReLU → conv, twice, plus a 1×1 shortcut),
widths doubling per level, stride-2 residual blocks going down, nearest-neighbour 2×
up-sampling coming up, and an attention gate on each skip connection. Three wirings, so the
ablation is clean (:class:`~lightmycells.train.config.Gate`):

- ``oktay``: Oktay et al. (2018), "Attention U-Net": ``α = σ(ψ(ReLU(W_x·skip + W_g·up)))``,
  the decoder sees ``concat(up, α ⊙ skip)``;
- ``bughunters``: the seed's code: the same ``α`` multiplies the *up-sampled decoder
  features*, the decoder sees ``concat(up, α ⊙ up)``, so the encoder skip reaches the
  decoder only through the one-channel gate;
- ``none``: no gate, the decoder sees ``concat(up, skip)``: a plain residual U-Net.

Departures from the seed, each for a reason: the project's percentile normalisation instead
of raw 16-bit intensities; widths keep doubling to the bottom (the seed capped the last level
at the one above); a linear 1×1 head (the seed ended in a LeakyReLU, which bends the
negative half of normalised targets). Batch norm (when on) is a fixed per-channel affine map
in eval mode, so predictions do not depend on how an image is tiled.
"""

from __future__ import annotations

import torch
from torch import nn

from lightmycells.train.config import Gate

#: Slope of the LeakyReLU activations (the RUNet's; Keras' default 0.3 in the seed).
SLOPE = 0.1


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class PreActBlock(nn.Module):
    """[norm → act → conv3 (stride s)] → [norm → act → conv3], plus a shortcut.

    The shortcut is the identity when shape and width are kept, else a 1×1 convolution of
    stride ``s`` followed by the norm (the seed's shortcut).
    """

    def __init__(self, c_in: int, c_out: int, norm: str, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(norm, c_in), nn.LeakyReLU(SLOPE),
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
            _norm(norm, c_out), nn.LeakyReLU(SLOPE),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip: nn.Module = nn.Identity()
        if c_in != c_out or stride != 1:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride),
                                      _norm(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, H, W) → (B, c_out, H / s, W / s)."""
        return self.body(x) + self.skip(x)


def _stage(c_in: int, c_out: int, blocks: int, norm: str, stride: int = 1) -> nn.Sequential:
    layers = [PreActBlock(c_in, c_out, norm, stride)]
    layers += [PreActBlock(c_out, c_out, norm) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class AttentionGate(nn.Module):
    """``α = σ(ψ(ReLU(W_x·skip + W_g·up)))``: one weight per pixel, in (0, 1).

    ``skip`` (the encoder features) and ``up`` (the up-sampled decoder features) have the
    same height and width; ``inter`` is the width of the joint space.
    """

    def __init__(self, c_skip: int, c_up: int, inter: int, norm: str) -> None:
        super().__init__()
        self.w_x = nn.Sequential(nn.Conv2d(c_skip, inter, 1, bias=False), _norm(norm, inter))
        self.w_g = nn.Sequential(nn.Conv2d(c_up, inter, 1), _norm(norm, inter))
        self.psi = nn.Conv2d(inter, 1, 1)

    def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """(B, c_skip, H, W), (B, c_up, H, W) → α (B, 1, H, W)."""
        return torch.sigmoid(self.psi(torch.relu(self.w_x(skip) + self.w_g(up))))


class DecoderLevel(nn.Module):
    """Up-sample, gate (by wiring), concatenate, residual blocks."""

    def __init__(self, c_up: int, c_skip: int, c_out: int, blocks: int, norm: str,
                 gate: Gate) -> None:
        super().__init__()
        self.wiring = gate
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.gate = (None if gate == Gate.NONE
                     else AttentionGate(c_skip, c_up, max(1, c_skip // 2), norm))
        c_cat = c_up + (c_up if gate == Gate.BUGHUNTERS else c_skip)
        self.blocks = _stage(c_cat, c_out, blocks, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """(B, c_up, H/2, W/2), (B, c_skip, H, W) → (B, c_out, H, W)."""
        up = self.up(x)
        if self.gate is None:
            other = skip
        elif self.wiring == Gate.OKTAY:
            other = self.gate(skip, up) * skip
        else:  # the seed: the gate multiplies the decoder's own up-sampled features
            other = self.gate(skip, up) * up
        return self.blocks(torch.cat([up, other], dim=1))


class AttentionResUNet(nn.Module):
    """Attention residual U-Net mapping ``(B, 1, H, W)`` to ``(B, out_channels, H, W)``.

    Parameters
    ----------
    out_channels:
        One channel per predicted organelle.
    depth:
        Number of 2× down-samplings; ``H`` and ``W`` must be multiples of ``2**depth``.
    width:
        Channels at full resolution, doubled at each level.
    blocks:
        Residual blocks per level (the first of a down level has stride 2).
    norm:
        ``"batch"`` or ``"none"``.
    gate:
        Skip wiring: ``oktay``, ``bughunters`` or ``none`` (see the module docstring).
    """

    def __init__(self, out_channels: int = 1, depth: int = 4, width: int = 12,
                 blocks: int = 1, norm: str = "batch", gate: Gate | str = Gate.OKTAY) -> None:
        super().__init__()
        gate = Gate(gate)
        self.depth = depth
        widths = [width * 2**level for level in range(depth + 1)]
        # the seed's stem: a plain conv, then one pre-activation block at full resolution
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, padding=1),
                                  _stage(widths[0], widths[0], blocks, norm))
        self.enc = nn.ModuleList(
            _stage(widths[i], widths[i + 1], blocks, norm, stride=2) for i in range(depth)
        )
        self.bridge = PreActBlock(widths[depth], widths[depth], norm)
        self.dec = nn.ModuleList(
            DecoderLevel(widths[i + 1], widths[i], widths[i], blocks, norm, gate)
            for i in range(depth)
        )
        self.head = nn.Sequential(_norm(norm, widths[0]), nn.LeakyReLU(SLOPE),
                                  nn.Conv2d(widths[0], out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) → (B, C, H, W)."""
        x = self.stem(x)  # (B, w, H, W)
        skips = []
        for enc in self.enc:
            skips.append(x)
            x = enc(x)  # (B, 2w, H/2, W/2) per level
        x = self.bridge(x)
        for level in reversed(range(self.depth)):
            x = self.dec[level](x, skips[level])
        return self.head(x)
