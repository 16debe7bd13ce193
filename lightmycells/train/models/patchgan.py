"""Conditional PatchGAN discriminator (pix2pix's ``NLayerDiscriminator``), never exported.

Input: the transmitted-light image and one organelle image, concatenated (2 channels). With
``layers = 3`` the output is a map of logits, each judging a 70×70 input patch (the
"70×70 PatchGAN"): three stride-2 4×4 convolutions, one stride-1 4×4 convolution, and a
stride-1 4×4 convolution to one channel. No norm on the first layer, LeakyReLU 0.2.

The discriminators are training-only: they are not in the model registry, the export never
sees them, only checkpoints hold them (with their optimiser).

Norm: ``instance`` by default (unlike the generator, whose batch norm is what makes tiles
independent at inference). A discriminator runs only in training, and per-sample statistics
keep each sample's loss and gradient its own, so a sample without this organelle's target,
weighted 0, contributes exactly nothing (with batch norm it would still move the batch
statistics the other samples are normalised by).
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class PatchGAN(nn.Module):
    """``(B, in_channels, H, W)`` → ``(B, 1, h, w)`` patch logits.

    Parameters
    ----------
    in_channels:
        2 for (input, organelle).
    width:
        Channels of the first layer (the seed's ``ndf``, 64 there); doubled per layer, at
        most 8×.
    layers:
        Stride-2 layers (3: 70×70 receptive field).
    norm:
        ``instance``, ``batch`` or ``none``.
    """

    def __init__(self, in_channels: int = 2, *, width: int = 16, layers: int = 3,
                 norm: str = "instance") -> None:
        super().__init__()
        bias = norm == "none"
        seq: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
                                nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=bias),
                    _norm(norm, out), nn.LeakyReLU(0.2, inplace=True)]
            channels = out
        seq.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits (real > 0 for the vanilla loss)."""
        return self.net(x)


def receptive_field(layers: int) -> int:
    """Receptive field (pixels) of one output logit of a ``layers``-layer PatchGAN.

    Each 4×4 convolution widens it by 3 × the product of the strides before it.
    """
    strides = [2] * layers + [1, 1]
    field, jump = 1, 1
    for stride in strides:
        field += 3 * jump
        jump *= stride
    return field
