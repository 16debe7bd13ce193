"""Modality conditioning (seed 003's "dynamic" model): codes, and one export per modality.

A model with ``model.condition: modality`` takes a one-hot code beside the image (order of
:data:`lightmycells.vocab.MODALITIES`: BF, PC, DIC). Training feeds each sample's code (the
patch dataset appends it), validation the field of view's. The container's contract stays
``(B, 1, H, W) → (B, C, H, W)``: the export writes one ordinary ONNX file per modality, the
code folded in as a constant (:class:`FixedModality`), each with a manifest entry naming its
modality. A modality's file keeps only the organelles that had training targets in that
modality (no DIC image has an actin label, in the real data and the simulator), so its
entry does not claim them and the manifest's ``"*"`` entry (a unified model) serves them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lightmycells.train.config import Condition, TrainConfig
from lightmycells.vocab import MODALITIES, Modality, Organelle

#: Length of the one-hot code.
CODES = len(MODALITIES)


def conditioned(cfg: TrainConfig) -> bool:
    """True when the model takes a modality code."""
    return cfg.model.condition == Condition.MODALITY


def code(modality: Modality | str) -> torch.Tensor:
    """The one-hot code ``(K,)`` float32 of a modality."""
    out = torch.zeros(CODES)
    out[MODALITIES.index(Modality(modality))] = 1.0
    return out


def condition(cfg: TrainConfig, modality: Modality | str,
              device: torch.device) -> tuple[torch.Tensor, ...]:
    """Extra forward arguments for an image of ``modality``: ``(code (1, K),)`` or ``()``."""
    return (code(modality)[None].to(device),) if conditioned(cfg) else ()


def organelles_by_modality(
    fovs: Sequence[object], organelles: Sequence[Organelle],
) -> dict[str, list[str]]:
    """For each modality, the output organelles with a training target in it (in order)."""
    have: dict[str, set[str]] = {}
    for fov in fovs:
        have.setdefault(str(fov.modality), set()).update(str(o) for o in fov.targets)
    return {m: [str(o) for o in organelles if str(o) in seen] for m, seen in have.items()}


class FixedModality(torch.nn.Module):
    """A conditioned model with one modality's code folded in, keeping some output channels.

    ``(B, 1, H, W)`` → ``(B, len(channels), H, W)`` of the model's ``outputs`` channels;
    traced to an ordinary ONNX file.
    """

    def __init__(self, model: torch.nn.Module, modality: Modality | str,
                 channels: Sequence[int], outputs: int) -> None:
        super().__init__()
        self.net = model
        self.register_buffer("code", code(modality)[None])
        self.register_buffer("channels", torch.tensor(list(channels), dtype=torch.long))
        self.all_channels = list(channels) == list(range(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's prediction for this modality (selected channels)."""
        out = self.net(x, self.code)
        return out if self.all_channels else out.index_select(1, self.channels)
